//! The sans-IO gossip core.

use crate::member::{Entry, Flags, KvList, Member, MemberStatus, Meta, Row};
use crate::node_id::cmp_keyed;
use crate::wire::{
    self, Beat, Digest, DigestEntry, Kind, KvEntries, KvEntry, Message, NodeDelta, PositionEntry,
    Positions, Status, Versions, digest_entry_size, node_delta_head_size, size,
};
use crate::{GossipConfig, GossipError, NodeId};
use phimon_detector::{PeerDetector, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Largest generation step accepted from gossip about a node: 2^32, more
/// than a century of wall-clock seconds (the runtime's generations are
/// `max(stored + 1, unix seconds)`). Within it a forged far-future
/// generation is refuted by the node itself; beyond it the entry is
/// dropped, so no one can push a node's generation to `u64::MAX`, where
/// it could no longer refute. A node's own word about itself is exempt
/// (only it can speak for itself), and a digest's claim is refuted only
/// while the refutation stays within the limit.
pub const MAX_GENERATION_JUMP: u64 = 1 << 32;

/// Rounds a leaving node keeps gossiping `left` before
/// [`Gossip::leave_complete`] says it may stop.
const LEAVE_LINGER_ROUNDS: u64 = 2;

/// Rounds the table must keep its shape (the same ids) before SYNs name
/// nodes by position: by then the peers have most likely learnt the same
/// nodes. A peer that has not answers with an empty ACK, and the SYN is
/// sent again by id.
const SETTLED_ROUNDS: u64 = 2;

/// Something the runtime should know about, from [`Gossip::poll_event`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A heartbeat of `node` advanced, observed at the local time `at`.
    /// Only with [`GossipConfig::heartbeat_events`].
    HeartbeatObserved {
        /// The node.
        node: NodeId,
        /// Its generation.
        generation: u64,
        /// Local arrival time.
        at: Timestamp,
    },
    /// A node's heartbeat was observed for the first time: it is watched.
    NodeJoined {
        /// The node.
        node: NodeId,
        /// Its generation.
        generation: u64,
        /// Its advertised address.
        address: String,
    },
    /// A node came back with a new generation, superseding the old one.
    NodeRestarted {
        /// The node.
        node: NodeId,
        /// The generation it replaced.
        old_generation: u64,
        /// The new one.
        new_generation: u64,
    },
    /// A node announced it is leaving: it is no longer watched and never
    /// judged dead in this generation.
    NodeLeft {
        /// The node.
        node: NodeId,
        /// Its generation.
        generation: u64,
    },
    /// A node's phi reached the threshold: suspected locally.
    NodeDead {
        /// The node.
        node: NodeId,
        /// Its generation.
        generation: u64,
    },
    /// A node judged dead is heard from again (same generation).
    NodeAlive {
        /// The node.
        node: NodeId,
        /// Its generation.
        generation: u64,
    },
    /// A dead or left node was forgotten: after `dead_grace`, or early,
    /// displaced by a new id while the table was full (`max_nodes`).
    /// Drop whatever was kept about it.
    NodeRemoved {
        /// The node.
        node: NodeId,
    },
    /// Gossip claimed this node is further along than it is (a newer
    /// generation, heartbeat or metadata, or a status it did not declare):
    /// it moved to a new generation so its own word wins again. The
    /// runtime must persist `new_generation`.
    SelfRefuted {
        /// The generation given up.
        old_generation: u64,
        /// The generation now in use.
        new_generation: u64,
    },
}

/// An encoded message to send, from [`Gossip::poll_transmit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The node it is for, when known; the transport checks the peer's
    /// certificate against it. `None` for a seed address.
    pub to_node: Option<NodeId>,
    /// Where to send it (`host:port`). Empty when the peer's address is
    /// not known yet (an answer to a node that contacted us first): send
    /// it on that node's connection.
    pub to_addr: String,
    /// The frame: at most `max_message_bytes`.
    pub payload: Vec<u8>,
}

/// A message to send, not yet encoded, from
/// [`Gossip::poll_transmit_typed`] (simulators and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedTransmit {
    /// As [`Transmit::to_node`].
    pub to_node: Option<NodeId>,
    /// As [`Transmit::to_addr`].
    pub to_addr: Arc<str>,
    /// The message.
    pub message: Message,
    /// Its exact encoded size in bytes.
    pub size: usize,
}

/// Counters of what the core dropped or did on its own, for metrics.
/// Every field only grows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// New node ids dropped because `max_nodes` was reached and no node
    /// could be displaced.
    pub nodes_rejected_cap: u64,
    /// Nodes forgotten early to make room for a new id (never-confirmed,
    /// left or dead ones, oldest first).
    pub nodes_evicted: u64,
    /// Entries dropped for an implausible generation jump.
    pub entries_implausible: u64,
    /// Node states whose key/values would exceed `max_kv_bytes_per_node`.
    pub kv_rejected: u64,
    /// Times this node refuted gossip about itself.
    pub refutations: u64,
    /// Messages that could not be encoded (never expected).
    pub encode_failures: u64,
}

/// How far this node is in leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leave {
    Staying,
    /// `leave` was called; the next round announces `leaving`.
    Requested,
    /// `leaving` was announced in this round.
    Announced(u64),
    /// `left` was announced in this round.
    Left(u64),
}

/// A message waiting in the outbox.
#[derive(Debug)]
struct Outgoing {
    to_node: Option<NodeId>,
    to_addr: Arc<str>,
    message: Message,
    size: usize,
}

/// A node whose state the partner lacks, while a delta is assembled.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    idx: usize,
    /// 0 for the full state (the partner lacks this generation).
    from_version: u64,
    full: bool,
    /// Only the heartbeat is news and the partner reads positions: sent
    /// as a [`Beat`] (then `size` is an upper bound: the gap to the
    /// previous position is not known until the delta is assembled).
    beat: bool,
    /// How far behind the partner's heartbeat is (u64::MAX if unknown).
    lag: u64,
    size: usize,
}

/// The gossip protocol core for one node: membership, heartbeat
/// dissemination (scuttlebutt SYN → ACK → ACK2) and the local phi
/// judgement of every peer. Sans-IO: no clock, no socket, no thread.
///
/// Call order, all with the caller's monotonic `now`:
/// 1. [`new`](Self::new) once.
/// 2. Whenever a frame arrives: [`handle_message`](Self::handle_message)
///    with the sender's id from its certificate.
/// 3. When [`poll_timeout`](Self::poll_timeout) is reached:
///    [`handle_timeout`](Self::handle_timeout) (runs a round when due).
/// 4. After each of the above: drain [`poll_transmit`](Self::poll_transmit)
///    and [`poll_event`](Self::poll_event), re-arm the timer at
///    [`poll_timeout`](Self::poll_timeout).
///
/// Local requests: [`set_kv`](Self::set_kv), [`leave`](Self::leave),
/// [`observer_resumed`](Self::observer_resumed). Reads:
/// [`members`](Self::members), [`member`](Self::member),
/// [`phi`](Self::phi), [`stats`](Self::stats).
///
/// The heartbeat arrival time fed to each peer's detector is always the
/// local `now`, never a remote timestamp.
#[derive(Debug)]
pub struct Gossip {
    config: GossipConfig,
    cluster: Arc<str>,
    self_id: NodeId,
    /// Every known node, this one included, sorted by id: digests are
    /// built and merged in one linear pass. The table is a struct of
    /// arrays: `members` holds the rarely read part of each row (id,
    /// metadata, detector), and the columns below, indexed by the same
    /// position, what every merge, beat and judgement reads, so a pass
    /// over the table reads ~33 bytes per node instead of ~100.
    members: Vec<Entry>,
    /// Generation, heartbeat and metadata version of each member.
    states: Vec<Versions>,
    /// Declared status and local judgement of each member.
    flags: Vec<Flags>,
    /// Local time of each member's last observed heartbeat (kept only
    /// with local detection: judgement is its only reader).
    heard: Vec<Timestamp>,
    /// Position of the own entry in `members`, and each member's
    /// [`NodeId::prefix_key`] (a dense array that merges gallop over):
    /// both kept by every change of the table's shape (`reindex`).
    self_pos: usize,
    keys: Vec<u64>,
    /// Fingerprint of the table's ids in order ([`table_fingerprint`]),
    /// sent in every message, and the round it last changed.
    table: u64,
    table_since: u64,
    /// Peers sent a positional SYN this round: an empty ACK from one of
    /// them (it holds another table) is answered with the SYN by id.
    sent_by_position: Vec<NodeId>,
    rng: StdRng,
    next_round: Timestamp,
    round: u64,
    leave: Leave,
    /// Where the next digest slice starts when the table does not fit one
    /// message.
    digest_cursor: Option<NodeId>,
    outbox: VecDeque<Outgoing>,
    events: VecDeque<Event>,
    stats: GossipStats,
    seeds: Vec<Arc<str>>,
    /// Nodes forgotten within the last `dead_grace` (at most `max_nodes`),
    /// with the last state known of them: copies still circulating on
    /// other nodes cannot bring them back, only news (a newer heartbeat or
    /// generation) can.
    forgotten: HashMap<NodeId, (u64, u64, Timestamp)>,
    /// Encoded size of an empty message from this node.
    empty_size: usize,
    /// Scratch of `judge`: the peers it evaluates (kept for its
    /// allocation).
    due: Vec<usize>,
}

impl Gossip {
    /// A core for node `self_id`, advertised at `self_address`, in
    /// `generation` (the caller persists it and passes a larger one on
    /// every start). `rng_seed` seeds every random choice; the first round
    /// runs at a random point within one interval of `now`.
    ///
    /// Out-of-range settings are clamped to usable values (see
    /// [`GossipConfig::validate`] to report them instead).
    pub fn new(
        mut config: GossipConfig,
        self_id: NodeId,
        self_address: String,
        generation: u64,
        rng_seed: u64,
        now: Timestamp,
    ) -> Self {
        config.fanout = config.fanout.max(1);
        config.max_nodes = config.max_nodes.max(2);
        config.max_message_bytes = config
            .max_message_bytes
            .max(GossipConfig::MIN_MESSAGE_BYTES);
        config.max_kv_bytes_per_node = config
            .max_kv_bytes_per_node
            .min(config.max_message_bytes / 4);
        config.interval = config.interval.max(std::time::Duration::from_millis(1));
        let cluster: Arc<str> = Arc::from(config.cluster_name.as_str());
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let interval = micros(config.interval);
        let first = Timestamp::from_micros(
            now.as_micros()
                .saturating_add(rng.random_range(0..interval)),
        );
        let seeds = config
            .seeds
            .iter()
            .filter(|s| **s != self_address)
            .map(|s| Arc::from(s.as_str()))
            .collect();
        // Fingerprints have their top bit set: always the same size.
        let empty_size = Message::empty_size(cluster.len(), self_id.len(), u64::MAX);
        let me = Entry {
            id: self_id.clone(),
            since: now,
            detector: None,
            meta: Meta::new(Arc::from(self_address), KvList::default()),
        };
        let table = table_fingerprint(std::slice::from_ref(&me));
        Gossip {
            config,
            cluster,
            self_id,
            keys: vec![me.id.prefix_key()],
            members: vec![me],
            states: vec![Versions {
                generation,
                heartbeat: 0,
                version: 0,
            }],
            flags: vec![Flags::new(Status::Alive)],
            heard: vec![now],
            self_pos: 0,
            table,
            table_since: 0,
            sent_by_position: Vec::new(),
            rng,
            next_round: first,
            round: 0,
            leave: Leave::Staying,
            digest_cursor: None,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            stats: GossipStats::default(),
            seeds,
            forgotten: HashMap::new(),
            empty_size,
            due: Vec::new(),
        }
    }

    // ----- inputs -------------------------------------------------------

    /// Decodes and processes a frame from `from` (the id its certificate
    /// authenticated). Rejects oversized frames before decoding, unknown
    /// versions, malformed or invalid messages, another cluster's
    /// messages and messages whose claimed sender is not `from`.
    pub fn handle_message(
        &mut self,
        now: Timestamp,
        from: &NodeId,
        frame: &[u8],
    ) -> Result<(), GossipError> {
        // `decode` validates the message: the typed path's check is not
        // repeated.
        let msg = wire::decode(frame, self.config.max_message_bytes)?;
        self.check_envelope(from, &msg)?;
        self.process(now, from, msg)
    }

    /// Processes an already decoded message: the path
    /// [`handle_message`](Self::handle_message) ends in, and the one a
    /// simulator uses to skip encoding. Applies every check except the
    /// frame-level ones (size, version, decoding).
    pub fn handle_message_typed(
        &mut self,
        now: Timestamp,
        from: &NodeId,
        msg: Message,
    ) -> Result<(), GossipError> {
        self.check_envelope(from, &msg)?;
        msg.validate()?;
        self.process(now, from, msg)
    }

    /// Rejects another cluster's messages and a claimed sender that is not
    /// the authenticated one.
    fn check_envelope(&self, from: &NodeId, msg: &Message) -> Result<(), GossipError> {
        if *msg.cluster != *self.cluster {
            return Err(GossipError::WrongCluster {
                expected: self.cluster.to_string(),
                got: msg.cluster.to_string(),
            });
        }
        if msg.sender != *from {
            return Err(GossipError::SenderMismatch {
                claimed: msg.sender.clone(),
                authenticated: from.clone(),
            });
        }
        Ok(())
    }

    /// Processes a message that passed [`check_envelope`](Self::check_envelope)
    /// and [`Message::validate`].
    fn process(&mut self, now: Timestamp, from: &NodeId, msg: Message) -> Result<(), GossipError> {
        if *from == self.self_id {
            return Err(GossipError::Invalid {
                reason: "message from this node's own id".into(),
            });
        }
        let mut digest = msg.digest;
        let positions = std::mem::take(&mut digest.positions);
        // Positions are read only against the same table.
        let readable = positions.table == self.table;
        match msg.kind {
            Kind::Syn if !positions.states.is_empty() => {
                self.on_syn_positional(from, readable, &positions.states);
            }
            Kind::Syn => self.on_syn(now, from, digest, readable),
            Kind::Ack => {
                if msg.delta.is_empty() && digest.entries.is_empty() && positions.is_empty() {
                    // Only a peer that could not read a positional SYN
                    // sends an empty ACK: repeat that SYN by id.
                    if !readable {
                        self.retry_by_id(from);
                    }
                    return Ok(());
                }
                if readable {
                    self.apply_beats(now, from, &positions.beats);
                }
                self.apply_delta(now, from, msg.delta);
                // Admitted nodes change the table: positions then no
                // longer match it.
                let readable = readable && positions.table == self.table;
                let by_position: &[PositionEntry] = if readable { &positions.request } else { &[] };
                self.on_request(from, &digest.entries, by_position, readable);
            }
            Kind::Ack2 => {
                if readable {
                    self.apply_beats(now, from, &positions.beats);
                }
                self.apply_delta(now, from, msg.delta);
            }
        }
        Ok(())
    }

    /// Runs a gossip round if one is due at `now`: the own heartbeat
    /// advances, peers are judged (dead, alive again, forgotten), SYNs go
    /// to `fanout` random live peers, and now and then to a dead node or a
    /// seed. Calling it early does nothing.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if now < self.next_round {
            return;
        }
        let interval = micros(self.config.interval);
        // Stay on the grid when slightly late, but never run a burst of
        // rounds to catch up after a stall: the heartbeat rate must not
        // exceed one per interval.
        let next = self.next_round.as_micros().saturating_add(interval);
        self.next_round = if next > now.as_micros() {
            Timestamp::from_micros(next)
        } else {
            Timestamp::from_micros(now.as_micros().saturating_add(interval))
        };
        self.round += 1;
        self.advance_self();
        self.judge(now);
        self.gossip_round();
    }

    /// Publishes `key = value` in this node's metadata. Refused (and
    /// nothing changes) when the key is empty or longer than 255 bytes or
    /// the node's key/values would exceed `max_kv_bytes_per_node`.
    pub fn set_kv(&mut self, key: &str, value: &str) -> Result<(), GossipError> {
        let refuse = |reason: String| {
            Err(GossipError::KvRefused {
                key: key.chars().take(64).collect(),
                reason,
            })
        };
        if key.is_empty() || key.len() > wire::MAX_KEY_LEN {
            return refuse(format!("key must be 1..={} bytes", wire::MAX_KEY_LEN));
        }
        let cap = self.config.max_kv_bytes_per_node;
        let idx = self.self_idx();
        let me = &mut self.members[idx];
        let state = &mut self.states[idx];
        let old = me.meta.kv.get(key).map_or(0, |e| key.len() + e.value.len());
        let total = me.meta.kv_bytes - old + key.len() + value.len();
        if total > cap {
            return refuse(format!(
                "{total} bytes of key/values exceed the {cap}-byte limit"
            ));
        }
        if me.meta.kv.get(key).is_some_and(|e| e.value == value) {
            return Ok(());
        }
        state.version += 1;
        let version = state.version;
        me.meta.kv.set(KvEntry {
            key: key.to_owned(),
            value: value.to_owned(),
            version,
        });
        me.meta.recount();
        Ok(())
    }

    /// Leaves the cluster gracefully: the next round (run at once)
    /// announces `leaving`, the one after `left`. Peers stop watching this
    /// node and never judge it dead. Keep driving the core until
    /// [`leave_complete`](Self::leave_complete).
    pub fn leave(&mut self, now: Timestamp) {
        if self.leave == Leave::Staying {
            self.leave = Leave::Requested;
            self.next_round = now;
        }
    }

    /// True once `left` has been gossiped long enough for the process to
    /// stop.
    pub fn leave_complete(&self) -> bool {
        matches!(self.leave, Leave::Left(r) if self.round >= r + LEAVE_LINGER_ROUNDS)
    }

    /// The local node itself was stalled until `now` (its event loop or
    /// process was paused): the silence of every peer during the stall is
    /// not counted against it.
    pub fn observer_resumed(&mut self, now: Timestamp) {
        for e in &mut self.members {
            if let Some(d) = e.detector.as_mut() {
                d.observer_resumed(now);
            }
        }
    }

    // ----- outputs ------------------------------------------------------

    /// The next message to send, encoded.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        while let Some(out) = self.outbox.pop_front() {
            match wire::encode(&out.message) {
                Ok(payload) => {
                    debug_assert_eq!(payload.len(), out.size);
                    return Some(Transmit {
                        to_node: out.to_node,
                        to_addr: String::from(&*out.to_addr),
                        payload,
                    });
                }
                Err(_) => self.stats.encode_failures += 1,
            }
        }
        None
    }

    /// The next message to send, not encoded (for simulators and tests).
    #[must_use]
    pub fn poll_transmit_typed(&mut self) -> Option<TypedTransmit> {
        self.outbox.pop_front().map(|o| TypedTransmit {
            to_node: o.to_node,
            to_addr: o.to_addr,
            message: o.message,
            size: o.size,
        })
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        Some(self.next_round)
    }

    // ----- reads --------------------------------------------------------

    /// This node's id.
    pub fn self_id(&self) -> &NodeId {
        &self.self_id
    }

    /// This node's current generation (changes on a refutation; see
    /// [`Event::SelfRefuted`]).
    pub fn generation(&self) -> u64 {
        self.states[self.self_idx()].generation
    }

    /// The settings in use (after clamping).
    pub fn config(&self) -> &GossipConfig {
        &self.config
    }

    /// Rounds run so far.
    pub fn rounds(&self) -> u64 {
        self.round
    }

    /// Every known node, this one included, sorted by id.
    pub fn members(&self) -> impl ExactSizeIterator<Item = Member<'_>> + '_ {
        (0..self.members.len()).map(move |i| self.member_at(i))
    }

    /// The view of member `i`.
    fn member_at(&self, i: usize) -> Member<'_> {
        Member {
            entry: &self.members[i],
            state: self.states[i],
            flags: self.flags[i],
            is_self: i == self.self_pos,
        }
    }

    /// One node, if known.
    pub fn member<Q: AsRef<str> + ?Sized>(&self, id: &Q) -> Option<Member<'_>> {
        self.find(id.as_ref()).map(|i| self.member_at(i))
    }

    /// Heartbeat of node `id`, looked up first at position `*hint` (and
    /// `*hint` moved to where it is): a caller that asks every core about
    /// the same node finds it at the same position in settled tables.
    pub(crate) fn heartbeat_hinted(&self, id: &NodeId, hint: &mut usize) -> Option<u64> {
        if self.members.get(*hint).is_none_or(|e| e.id != *id) {
            *hint = self.find_id(id)?;
        }
        Some(self.states[*hint].heartbeat)
    }

    /// Number of known nodes, this one included.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a core knows at least itself.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The suspicion level of `node` at `now`; `None` when it is not
    /// watched (unknown, this node, joining, leaving or left).
    pub fn phi<Q: AsRef<str> + ?Sized>(&self, node: &Q, now: Timestamp) -> Option<f64> {
        self.find(node.as_ref())
            .and_then(|i| self.members[i].detector.as_deref())
            .map(|d| d.phi(now))
    }

    /// Counters of dropped junk and self-refutations.
    pub fn stats(&self) -> &GossipStats {
        &self.stats
    }

    // ----- internals ----------------------------------------------------

    fn find(&self, id: &str) -> Option<usize> {
        if id.len() <= crate::node_id::INLINE {
            // Held inline when short: the inline comparison, no allocation.
            return self.find_id(&NodeId::from(id));
        }
        self.members
            .binary_search_by(|e| e.id.as_bytes().cmp(id.as_bytes()))
            .ok()
    }

    /// As [`find`](Self::find), with the id's own (inline) comparison.
    fn find_id(&self, id: &NodeId) -> Option<usize> {
        find_in(&self.members, &self.keys, id)
    }

    fn self_idx(&self) -> usize {
        debug_assert_eq!(self.members[self.self_pos].id, self.self_id);
        self.self_pos
    }

    /// Finds the own entry again and rebuilds the keys after entries were
    /// inserted or removed.
    fn reindex(&mut self) {
        self.keys.clear();
        self.keys
            .extend(self.members.iter().map(|e| e.id.prefix_key()));
        // The own entry is never removed, so the search always succeeds;
        // the fallback only keeps this total.
        self.self_pos = self.find_id(&self.self_id).unwrap_or(0);
        let table = table_fingerprint(&self.members);
        if table != self.table {
            self.table = table;
            self.table_since = self.round;
        }
    }

    /// True for a node only heard of, never seen alive here: it is not
    /// relayed, so an invented id travels one hop at most (unless its
    /// inventor keeps advancing its heartbeat).
    fn is_hearsay_at(&self, i: usize) -> bool {
        let f = self.flags[i];
        f.status == Status::Alive && !f.watched && i != self.self_pos
    }

    /// Keeps the rows whose `keep` is true, in every column.
    fn retain_rows(&mut self, keep: &[bool]) {
        retain_mask(&mut self.members, keep);
        retain_mask(&mut self.states, keep);
        retain_mask(&mut self.flags, keep);
        retain_mask(&mut self.heard, keep);
    }

    fn advance_self(&mut self) {
        let round = self.round;
        let idx = self.self_idx();
        let me = &mut self.states[idx];
        let flags = &mut self.flags[idx];
        me.heartbeat = me.heartbeat.saturating_add(1);
        match self.leave {
            Leave::Requested => {
                flags.status = Status::Leaving;
                me.version += 1;
                self.leave = Leave::Announced(round);
            }
            Leave::Announced(r) if round > r => {
                flags.status = Status::Left;
                me.version += 1;
                self.leave = Leave::Left(round);
            }
            _ => {}
        }
    }

    /// Judges every watched peer at `now` and forgets those whose grace
    /// ran out.
    fn judge(&mut self, now: Timestamp) {
        let threshold = self.config.phi_threshold;
        let grace = micros(self.config.dead_grace);
        // A peer heard from within the last interval is not evaluated: a
        // node advances its counter at most once per interval, so its
        // heartbeats arrive no faster than that on average, and a silence
        // shorter than the mean interval keeps phi below 0.5 in every
        // model. Most peers are in this case, and phi is the costliest
        // part of a round. (A verdict can come at most one round late.)
        let fresh = micros(self.config.interval);
        // Without local detection no member has a detector: the pass
        // would read every cold entry for nothing.
        let judged = if self.config.local_detection {
            self.flags.len()
        } else {
            0
        };
        // The peers to evaluate, then their detectors read in a loop of
        // independent reads (see `apply_beats`): which peers are fresh
        // follows no pattern, so in one loop every mispredicted branch
        // would stop the processor from running ahead to the next peer's
        // cache misses.
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        for (i, f) in self.flags[..judged].iter().enumerate() {
            if f.dead || now.micros_since(self.heard[i]) >= fresh {
                due.push(i);
            }
        }
        warm_detectors(&self.members, due.iter().copied());
        for &i in &due {
            let f = &mut self.flags[i];
            let e = &mut self.members[i];
            let Some(d) = e.detector.as_ref() else {
                continue;
            };
            if !f.dead {
                if d.phi(now) >= threshold {
                    f.dead = true;
                    e.since = now;
                    self.events.push_back(Event::NodeDead {
                        node: e.id.clone(),
                        generation: self.states[i].generation,
                    });
                }
            } else if d.phi(now) < threshold {
                // Only after an observer stall: a heartbeat would have
                // cleared the flag already.
                f.dead = false;
                e.since = now;
                self.events.push_back(Event::NodeAlive {
                    node: e.id.clone(),
                    generation: self.states[i].generation,
                });
            }
        }
        self.due = due;
        self.forgotten
            .retain(|_, (_, _, at)| now.micros_since(*at) < grace);
        let mut gone = Vec::new();
        let mut keep = Vec::new();
        for (i, e) in self.members.iter().enumerate() {
            // The flags first: the cold entry (its `since`) is read only
            // for the few members not alive.
            let status = self.flags[i].member_status(false);
            if status == MemberStatus::Alive
                || now.micros_since(e.since) < grace
                || i == self.self_pos
            {
                continue;
            }
            if status != MemberStatus::Joining {
                self.events
                    .push_back(Event::NodeRemoved { node: e.id.clone() });
            }
            let s = self.states[i];
            gone.push((e.id.clone(), s.generation, s.heartbeat));
            if keep.is_empty() {
                keep = vec![true; self.members.len()];
            }
            keep[i] = false;
        }
        if !gone.is_empty() {
            self.retain_rows(&keep);
            self.reindex();
        }
        for (id, g, h) in gone {
            self.forget(id, g, h, now);
        }
    }

    /// Remembers a removed node's last state for `dead_grace`.
    fn forget(&mut self, id: NodeId, generation: u64, heartbeat: u64, now: Timestamp) {
        if self.forgotten.len() >= self.config.max_nodes {
            // Full: drop the oldest memory (ties by id, for determinism).
            if let Some(oldest) = self
                .forgotten
                .iter()
                .min_by(|a, b| a.1.2.cmp(&b.1.2).then(a.0.cmp(b.0)))
                .map(|(k, _)| k.clone())
            {
                self.forgotten.remove(&oldest);
            }
        }
        self.forgotten.insert(id, (generation, heartbeat, now));
    }

    fn gossip_round(&mut self) {
        let self_idx = self.self_idx();
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (i, f) in self.flags.iter().enumerate() {
            if i == self_idx {
                continue;
            }
            match f.member_status(false) {
                MemberStatus::Alive => live.push(i),
                MemberStatus::Dead => dead.push(i),
                _ => {}
            }
        }
        let k = self.config.fanout.min(live.len());
        let chosen = rand::seq::index::sample(&mut self.rng, live.len(), k);
        self.sent_by_position.clear();
        // Every SYN of the round carries the same digest when the table
        // fits one message: it is built once and shared.
        let mut whole = RoundDigests::default();
        for c in chosen.iter() {
            self.send_syn(Some(live[c]), &mut whole);
        }
        // Dead nodes are contacted now and then (more often the more of
        // them there are), so a healed partition is noticed.
        if !dead.is_empty() {
            let p = dead.len() as f64 / (live.len() + 1) as f64;
            if self.rng.random::<f64>() < p {
                let i = dead[self.rng.random_range(0..dead.len())];
                self.send_syn(Some(i), &mut whole);
            }
        }
        // Seeds: always when alone, otherwise with a probability that
        // shrinks as the cluster grows (a partition larger than the seed
        // list heals through the dead-node contact above).
        if !self.seeds.is_empty() {
            let p = self.seeds.len() as f64 / (live.len() + dead.len()).max(1) as f64;
            if live.is_empty() || self.rng.random::<f64>() < p {
                let s = self.rng.random_range(0..self.seeds.len());
                let addr = self.seeds[s].clone();
                let (digest, size) = self.round_digest(&mut whole.by_id);
                self.push_out(None, addr, Kind::Syn, digest, Vec::new(), size);
            }
        }
    }

    /// Queues a SYN to member `idx`, with the round's digest: by position
    /// once the table has settled and fits one message, else by id.
    fn send_syn(&mut self, idx: Option<usize>, whole: &mut RoundDigests) {
        let Some(idx) = idx else { return };
        let to = self.members[idx].id.clone();
        let addr = self.members[idx].meta.address.clone();
        if self.round >= self.table_since + SETTLED_ROUNDS {
            if whole.by_position.is_none() {
                whole.by_position = Some(self.build_positional_digest());
            }
            if let Some(Some((digest, size))) = &whole.by_position {
                let (digest, size) = (digest.clone(), *size);
                self.sent_by_position.push(to.clone());
                self.push_out(Some(to), addr, Kind::Syn, digest, Vec::new(), size);
                return;
            }
        }
        let (digest, size) = self.round_digest(&mut whole.by_id);
        self.push_out(Some(to), addr, Kind::Syn, digest, Vec::new(), size);
    }

    /// Sends the SYN by id to `from`, which answered a positional SYN of
    /// this round with an empty ACK: it holds another table.
    fn retry_by_id(&mut self, from: &NodeId) {
        let Some(k) = self.sent_by_position.iter().position(|p| p == from) else {
            // Not asked: an empty ACK is no reason to send anything.
            return;
        };
        self.sent_by_position.swap_remove(k);
        let Some(idx) = self.find_id(from) else {
            return;
        };
        let addr = self.members[idx].meta.address.clone();
        let (digest, size) = self.build_digest();
        self.push_out(
            Some(from.clone()),
            addr,
            Kind::Syn,
            digest,
            Vec::new(),
            size,
        );
    }

    /// The next digest of this round: a copy of `whole` (the whole table,
    /// shared) once built, otherwise [`build_digest`](Self::build_digest),
    /// remembered in `whole` when it covers the whole table. The table
    /// does not change within a round, and after a whole-table digest the
    /// cursor starts over: building again would give the same digest.
    fn round_digest(&mut self, whole: &mut Option<(Digest, usize)>) -> (Digest, usize) {
        if let Some(d) = whole {
            return d.clone();
        }
        let (digest, size) = self.build_digest();
        if digest.from.is_none() && digest.to.is_none() {
            *whole = Some((digest.clone(), size));
        }
        (digest, size)
    }

    /// The whole table by position, and its size beyond the empty
    /// message's; `None` when it does not fit one message.
    fn build_positional_digest(&self) -> Option<(Digest, usize)> {
        let mut states = self.states.clone();
        for (i, s) in states.iter_mut().enumerate() {
            if self.is_hearsay_at(i) {
                // Not vouched for: the partner sends it if it knows more.
                *s = Versions::default();
            }
        }
        let positions = Positions {
            table: self.table,
            states: states.into(),
            ..Positions::default()
        };
        let extra = positions.states_size() - size::array(0);
        if extra > self.budget() {
            return None;
        }
        let digest = Digest {
            positions,
            ..Digest::default()
        };
        Some((digest, extra))
    }

    fn push_out(
        &mut self,
        to_node: Option<NodeId>,
        to_addr: Arc<str>,
        kind: Kind,
        digest: Digest,
        delta: Vec<NodeDelta>,
        body_size: usize,
    ) {
        let mut digest = digest;
        digest.positions.table = self.table;
        let message = Message {
            kind,
            cluster: self.cluster.clone(),
            sender: self.self_id.clone(),
            digest,
            delta,
        };
        let size = self.empty_size + body_size;
        debug_assert_eq!(size, message.wire_size());
        self.outbox.push_back(Outgoing {
            to_node,
            to_addr,
            message,
            size,
        });
    }

    /// Room for the digest and delta of one message.
    fn budget(&self) -> usize {
        // Saturating: an absurd cluster name leaves no room, not a panic.
        self.config
            .max_message_bytes
            .saturating_sub(self.empty_size)
    }

    /// The digest (or, when the table does not fit, the next slice of it)
    /// and its size beyond the empty message's.
    fn build_digest(&mut self) -> (Digest, usize) {
        let start = match &self.digest_cursor {
            Some(c) => self.members.partition_point(|e| e.id < *c),
            None => 0,
        };
        let start = if start >= self.members.len() {
            0
        } else {
            start
        };
        // Reserve the range bounds and the largest array header up front.
        let bound = size::str(NodeId::MAX_LEN);
        let budget = self
            .budget()
            .saturating_sub(2 * bound + size::MAX_ARRAY_HEADER);
        let mut used = 0;
        let mut entries = Vec::with_capacity(self.members.len() - start);
        let mut end = start;
        for (e, v) in self.members[start..].iter().zip(&self.states[start..]) {
            if self.is_hearsay_at(end) {
                // Not vouched for: the partner sends it if it knows more.
                end += 1;
                continue;
            }
            let s = digest_entry_size(e.id.len(), v.generation, v.heartbeat, v.version);
            if used + s > budget {
                break;
            }
            used += s;
            entries.push(DigestEntry {
                node_id: e.id.clone(),
                generation: v.generation,
                heartbeat: v.heartbeat,
                version: v.version,
            });
            end += 1;
        }
        let from = (start > 0).then(|| self.members[start].id.clone());
        let to = self.members.get(end).map(|e| e.id.clone());
        self.digest_cursor = to.clone();
        let digest = Digest {
            from,
            to,
            entries: entries.into(),
            positions: Positions::default(),
        };
        // Size beyond the empty digest counted in `empty_size`.
        let extra = opt_id_size(digest.from.as_ref()) + opt_id_size(digest.to.as_ref())
            - 2 * size::NIL
            + size::array(digest.entries.len())
            - size::array(0)
            + used;
        debug_assert_eq!(extra, digest.wire_size() - wire::EMPTY_DIGEST_SIZE);
        (digest, extra)
    }

    fn address_of(&self, id: &NodeId) -> Arc<str> {
        self.find_id(id)
            .map(|i| self.members[i].meta.address.clone())
            .unwrap_or_else(|| Arc::from(""))
    }

    /// A SYN: compare its digest with the table over the digest's range,
    /// answer with what the sender lacks and a request for what it has.
    /// `readable`: the sender holds this table, so heartbeat-only news
    /// goes as beats.
    fn on_syn(&mut self, now: Timestamp, from: &NodeId, digest: Digest, readable: bool) {
        let lo = match &digest.from {
            Some(f) => self.members.partition_point(|e| e.id < *f),
            None => 0,
        };
        let hi = match &digest.to {
            Some(t) => self.members.partition_point(|e| e.id < *t),
            None => self.members.len(),
        };
        let self_idx = self.self_idx();
        // Sized for the worst case: one transient allocation per message
        // (a buffer kept per core would cost 40 bytes per member at rest).
        let mut candidates = Vec::with_capacity(hi.saturating_sub(lo) + 1);
        let mut request = Vec::new();
        let mut refute: Option<u64> = None;
        let entries: &[DigestEntry] = &digest.entries;
        let (mut i, mut j) = (lo, 0);
        while i < hi || j < entries.len() {
            use std::cmp::Ordering::{Equal, Greater, Less};
            let ord = if i == hi {
                Greater
            } else if j == entries.len() {
                Less
            } else if self.members[i].id == entries[j].node_id {
                // The usual case: both know the node.
                Equal
            } else {
                let e = &entries[j].node_id;
                cmp_keyed(&self.members[i].id, self.keys[i], e, e.prefix_key())
            };
            match ord {
                Less => {
                    // The sender does not know this node.
                    if !self.is_hearsay_at(i) {
                        candidates.push(self.candidate(i, None, readable));
                    }
                    i += 1;
                }
                Greater => {
                    request.push(DigestEntry {
                        node_id: entries[j].node_id.clone(),
                        generation: 0,
                        heartbeat: 0,
                        version: 0,
                    });
                    j += 1;
                }
                Equal => {
                    let (m, e) = (&self.states[i], &entries[j]);
                    let same = m.generation == e.generation
                        && m.heartbeat == e.heartbeat
                        && m.version == e.version;
                    if !same {
                        if ahead(m, e.generation, e.heartbeat, e.version) && !self.is_hearsay_at(i)
                        {
                            let known = versions_of(e);
                            candidates.push(self.candidate(i, Some(known), readable));
                        }
                        if behind(m, e.generation, e.heartbeat, e.version) {
                            if i == self_idx {
                                refute = Some(refute.unwrap_or(0).max(e.generation));
                            } else {
                                request.push(DigestEntry {
                                    node_id: self.members[i].id.clone(),
                                    generation: m.generation,
                                    heartbeat: m.heartbeat,
                                    version: m.version,
                                });
                            }
                        }
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        self.refute_in_answer(refute, &mut candidates);
        let _ = now;
        // The request gets at most half of the room; the delta the rest.
        let budget = self.budget().saturating_sub(3 * size::MAX_ARRAY_HEADER);
        let mut req_size = 0;
        let mut kept = 0;
        for r in &request {
            let s = r.wire_size();
            if req_size + s > budget / 2 {
                break;
            }
            req_size += s;
            kept += 1;
        }
        request.truncate(kept);
        let (delta, beats, delta_size) = self.build_delta(&mut candidates, budget - req_size);
        if delta.is_empty() && beats.is_empty() && request.is_empty() {
            return;
        }
        let digest = Digest {
            entries: request.into(),
            positions: Positions {
                beats,
                ..Positions::default()
            },
            ..Digest::default()
        };
        let extra = size::array(digest.entries.len()) - size::array(0) + req_size + delta_size;
        let addr = self.address_of(from);
        self.push_out(Some(from.clone()), addr, Kind::Ack, digest, delta, extra);
    }

    /// A SYN by position: compare the sender's state of every position
    /// with the table's (no ids to compare), and answer as
    /// [`on_syn`](Self::on_syn) does, by position. A SYN naming another
    /// table is answered with an empty ACK, which asks for it by id.
    fn on_syn_positional(&mut self, from: &NodeId, readable: bool, states: &[Versions]) {
        if !readable || states.len() != self.members.len() {
            let addr = self.address_of(from);
            self.push_out(
                Some(from.clone()),
                addr,
                Kind::Ack,
                Digest::default(),
                Vec::new(),
                0,
            );
            return;
        }
        let (mut candidates, request, mut beats, refute) = self.compare_positions(states);
        // What `candidate` would give each beat as its size bound.
        let beats_bound: usize = beats.iter().map(beat_size_bound).sum();
        if refute.is_some() {
            // The own entry's news may change: all of it as candidates.
            self.beats_to_candidates(&mut beats, states, &mut candidates);
        }
        self.refute_in_answer(refute, &mut candidates);
        // The request gets at most half of the room; the delta the rest.
        let budget = self.budget().saturating_sub(3 * size::MAX_ARRAY_HEADER);
        let mut positions = Positions {
            request,
            ..Positions::default()
        };
        let mut req_size = positions.request_size();
        if req_size > budget / 2 {
            let mut prev = 0;
            let mut used = size::MAX_ARRAY_HEADER;
            let kept = positions
                .request
                .iter()
                .take_while(|r| {
                    let s = size::uint(u64::from(r.position - prev))
                        + size::uint(r.known.generation)
                        + size::uint(r.known.heartbeat)
                        + size::uint(r.known.version);
                    prev = r.position;
                    used += s;
                    used <= budget / 2
                })
                .count();
            positions.request.truncate(kept);
            req_size = positions.request_size();
        }
        let room = budget - req_size;
        if candidates.iter().map(|c| c.size).sum::<usize>() + beats_bound > room {
            // Too much for one answer: the stalest first, beats included.
            self.beats_to_candidates(&mut beats, states, &mut candidates);
        }
        let (delta, more_beats, mut delta_size) = self.build_delta(&mut candidates, room);
        if beats.is_empty() {
            beats = more_beats;
        } else {
            // Beats were kept apart: the candidates held none.
            debug_assert!(more_beats.is_empty());
            positions.beats = beats;
            delta_size += positions.beats_size() - size::array(0);
            beats = std::mem::take(&mut positions.beats);
        }
        if delta.is_empty() && beats.is_empty() && positions.request.is_empty() {
            return;
        }
        positions.beats = beats;
        let digest = Digest {
            positions,
            ..Digest::default()
        };
        let extra = req_size - size::array(0) + delta_size;
        let addr = self.address_of(from);
        self.push_out(Some(from.clone()), addr, Kind::Ack, digest, delta, extra);
    }

    /// Compares a positional SYN's `states` (same length as the table)
    /// with the table, slot by slot. Returns, in table order: the states
    /// that must go as candidates (another generation, metadata news, a
    /// node the sender does not vouch for), the request (what the sender
    /// knows better), the beats (heartbeat-only news for the sender), and a
    /// claim about this node to refute.
    ///
    /// The usual slot (same generation, no metadata news, a watched node
    /// other than this one) is classified without branches: it is written
    /// to both outputs and kept by advancing their lengths by a comparison.
    /// About half of a settled table's slots differ, in no predictable
    /// pattern, so branches there would be mispredicted half the time.
    fn compare_positions(
        &self,
        states: &[Versions],
    ) -> (Vec<Candidate>, Vec<PositionEntry>, Vec<Beat>, Option<u64>) {
        let self_idx = self.self_idx();
        let mut candidates = Vec::new();
        let mut refute: Option<u64> = None;
        POSITIONAL_SCRATCH.with_borrow_mut(|(beat_buf, req_buf)| {
            let n = states.len().min(self.states.len());
            if beat_buf.len() < n {
                beat_buf.resize(n, Beat::default());
                req_buf.resize(n, PositionEntry::default());
            }
            let (mut nb, mut nr) = (0, 0);
            let rows = self.states.iter().zip(states).zip(&self.flags).enumerate();
            for (i, ((m, e), f)) in rows {
                // Tables hold at most `max_nodes` entries.
                let position = u32::try_from(i).unwrap_or(u32::MAX);
                let hearsay = f.status == Status::Alive && !f.watched;
                let slow = (m.generation != e.generation)
                    | (e.generation == 0)
                    | (m.version > e.version)
                    | (i == self_idx)
                    | hearsay;
                if !slow {
                    beat_buf[nb] = Beat {
                        position,
                        generation: m.generation,
                        heartbeat: m.heartbeat,
                    };
                    nb += usize::from(m.heartbeat > e.heartbeat);
                    req_buf[nr] = PositionEntry {
                        position,
                        known: *m,
                    };
                    nr += usize::from((m.heartbeat < e.heartbeat) | (m.version < e.version));
                    continue;
                }
                if m == e {
                    continue;
                }
                if e.generation == 0 {
                    // The sender does not vouch for this node.
                    if !self.is_hearsay_at(i) {
                        candidates.push(self.candidate(i, None, true));
                    }
                    continue;
                }
                if ahead(m, e.generation, e.heartbeat, e.version) && !self.is_hearsay_at(i) {
                    if e.generation == m.generation && e.version >= m.version {
                        // What `candidate` makes a beat of.
                        beat_buf[nb] = Beat {
                            position,
                            generation: m.generation,
                            heartbeat: m.heartbeat,
                        };
                        nb += 1;
                    } else {
                        candidates.push(self.candidate(i, Some(*e), true));
                    }
                }
                if behind(m, e.generation, e.heartbeat, e.version) {
                    if i == self_idx {
                        refute = Some(refute.unwrap_or(0).max(e.generation));
                    } else {
                        req_buf[nr] = PositionEntry {
                            position,
                            known: *m,
                        };
                        nr += 1;
                    }
                }
            }
            (
                candidates,
                req_buf[..nr].to_vec(),
                beat_buf[..nb].to_vec(),
                refute,
            )
        })
    }

    /// Turns the beats an answer to a positional SYN set apart back into
    /// candidates (the sender's `states` say what it knew), to be chosen
    /// among like every other state.
    fn beats_to_candidates(
        &self,
        beats: &mut Vec<Beat>,
        states: &[Versions],
        candidates: &mut Vec<Candidate>,
    ) {
        for b in beats.drain(..) {
            let i = b.position as usize;
            candidates.push(self.candidate(i, states.get(i).copied(), true));
        }
    }

    /// Refutes a claim about this node found while answering a SYN (if
    /// plausible): the answer must then carry the new generation.
    fn refute_in_answer(&mut self, refute: Option<u64>, candidates: &mut Vec<Candidate>) {
        let self_idx = self.self_idx();
        let refute = refute.filter(|&g| self.refutable_claim(g));
        if let Some(g) = refute {
            self.refute(g);
            if let Some(c) = candidates.iter_mut().find(|c| c.idx == self_idx) {
                *c = self.candidate(self_idx, None, false);
            } else {
                candidates.push(self.candidate(self_idx, None, false));
            }
        }
    }

    /// An ACK's request, by id and (`by_position`, read against this
    /// table) by position: send what the responder asked for. `readable`:
    /// the responder holds this table, so heartbeat-only news goes as
    /// beats.
    fn on_request(
        &mut self,
        from: &NodeId,
        request: &[DigestEntry],
        by_position: &[PositionEntry],
        readable: bool,
    ) {
        if request.is_empty() && by_position.is_empty() {
            return;
        }
        let self_idx = self.self_idx();
        // Heartbeat-only news asked for by position goes straight into
        // beats, as in `on_syn_positional` (with what the responder knew,
        // should they have to become candidates after all). A request in
        // both forms (never from a well-behaved peer) is all candidates.
        let direct = readable && request.is_empty();
        let (mut beats, mut beat_known) = (Vec::new(), Vec::new());
        let mut beats_bound = 0;
        let mut candidates = Vec::with_capacity(if direct {
            16
        } else {
            request.len() + by_position.len() + 1
        });
        let mut refute = None;
        let mut i = 0;
        for r in request {
            // Requests are sorted, like the table: merge.
            i = seek(&self.members, &self.keys, i, &r.node_id);
            if self.members.get(i).is_none_or(|m| m.id != r.node_id) {
                continue;
            }
            let m = &self.states[i];
            if ahead(m, r.generation, r.heartbeat, r.version) && !self.is_hearsay_at(i) {
                candidates.push(self.candidate(i, Some(versions_of(r)), readable));
            }
            if i == self_idx && behind(m, r.generation, r.heartbeat, r.version) {
                refute = Some(r.generation);
            }
        }
        for r in by_position {
            let i = r.position as usize;
            // Beyond the table: not this table after all (a forger's).
            let Some(m) = self.states.get(i) else {
                continue;
            };
            let k = r.known;
            if ahead(m, k.generation, k.heartbeat, k.version) && !self.is_hearsay_at(i) {
                if direct && k.generation == m.generation && k.version >= m.version {
                    // What `candidate` makes a beat of.
                    let beat = Beat {
                        position: r.position,
                        generation: m.generation,
                        heartbeat: m.heartbeat,
                    };
                    beats_bound += beat_size_bound(&beat);
                    beats.push(beat);
                    beat_known.push(k);
                } else {
                    candidates.push(self.candidate(i, Some(k), readable));
                }
            }
            if i == self_idx && behind(m, k.generation, k.heartbeat, k.version) {
                refute = Some(k.generation);
            }
        }
        if !request.is_empty() && !by_position.is_empty() {
            // Both forms at once (never from a well-behaved peer): one
            // node asked twice is answered once.
            candidates.sort_by_key(|c| c.idx);
            candidates.dedup_by_key(|c| c.idx);
        }
        let refute = refute.filter(|&g| self.refutable_claim(g));
        let budget = self.budget().saturating_sub(3 * size::MAX_ARRAY_HEADER);
        if refute.is_some()
            || candidates.iter().map(|c| c.size).sum::<usize>() + beats_bound > budget
        {
            // The own entry's news changes, or the answer must be cut to
            // fit (stalest first): every state as a candidate.
            for (b, k) in beats.drain(..).zip(beat_known.drain(..)) {
                candidates.push(self.candidate(b.position as usize, Some(k), true));
            }
        }
        if let Some(g) = refute {
            self.refute(g);
            candidates.retain(|c| c.idx != self_idx);
            candidates.push(self.candidate(self_idx, None, false));
        }
        let (delta, more_beats, mut delta_size) = self.build_delta(&mut candidates, budget);
        let beats = if beats.is_empty() {
            more_beats
        } else {
            // Beats were kept apart: the candidates held none.
            debug_assert!(more_beats.is_empty());
            let p = Positions {
                beats,
                ..Positions::default()
            };
            delta_size += p.beats_size() - size::array(0);
            p.beats
        };
        if delta.is_empty() && beats.is_empty() {
            return;
        }
        let digest = Digest {
            positions: Positions {
                beats,
                ..Positions::default()
            },
            ..Digest::default()
        };
        let addr = self.address_of(from);
        self.push_out(
            Some(from.clone()),
            addr,
            Kind::Ack2,
            digest,
            delta,
            delta_size,
        );
    }

    /// What a partner that knows `known` of member `idx` lacks, and its
    /// encoded size. `readable`: the partner holds this table, so
    /// heartbeat-only news can go as a [`Beat`].
    fn candidate(&self, idx: usize, known: Option<Versions>, readable: bool) -> Candidate {
        let m = &self.states[idx];
        let (full, from_version, lag) = match known {
            Some(k) if k.generation == m.generation => (
                false,
                k.version.min(m.version),
                m.heartbeat.saturating_sub(k.heartbeat),
            ),
            _ => (true, 0, u64::MAX),
        };
        if readable && !full && from_version >= m.version {
            let size = beat_size_bound(&Beat {
                // Tables hold at most `max_nodes` entries.
                position: u32::try_from(idx).unwrap_or(u32::MAX),
                generation: m.generation,
                heartbeat: m.heartbeat,
            });
            return Candidate {
                idx,
                from_version,
                full,
                beat: true,
                lag,
                size,
            };
        }
        let cold = &self.members[idx];
        let address_len = full.then(|| cold.meta.address.len());
        let mut size = node_delta_head_size(
            cold.id.len(),
            m.generation,
            m.heartbeat,
            from_version,
            m.version,
            address_len,
        );
        if full {
            size += cold.meta.kv_wire + size::array(cold.meta.kv.len());
        } else if from_version >= m.version {
            // The common case: only the heartbeat is news.
            size += size::array(0);
        } else {
            let mut n = 0;
            for e in cold.meta.kv.iter() {
                if e.version > from_version {
                    size += e.wire_size();
                    n += 1;
                }
            }
            size += size::array(n);
        }
        Candidate {
            idx,
            from_version,
            full,
            beat: false,
            lag,
            size,
        }
    }

    /// Builds a delta within `budget` bytes: everything when it fits,
    /// otherwise the stalest states first (unknown generations, then the
    /// largest heartbeat lag). Returns the node states sorted by id and
    /// the beats by position, with their size beyond an empty message's.
    fn build_delta(
        &self,
        candidates: &mut Vec<Candidate>,
        budget: usize,
    ) -> (Vec<NodeDelta>, Vec<Beat>, usize) {
        let total: usize = candidates.iter().map(|c| c.size).sum();
        if total > budget {
            candidates.sort_unstable_by(|a, b| {
                b.full
                    .cmp(&a.full)
                    .then(b.lag.cmp(&a.lag))
                    .then(a.idx.cmp(&b.idx))
            });
            let mut used = 0;
            candidates.retain(|c| {
                if used + c.size <= budget {
                    used += c.size;
                    true
                } else {
                    false
                }
            });
        }
        // Ids ascending, as receivers require: candidates come in table
        // order except a refutation's own entry, which is appended (an
        // unsorted delta is rejected whole, refutation included).
        candidates.sort_unstable_by_key(|c| c.idx);
        let n_beats = candidates.iter().filter(|c| c.beat).count();
        let mut beats = Vec::with_capacity(n_beats);
        let mut delta = Vec::with_capacity(candidates.len() - n_beats);
        let mut size = size::array(candidates.len() - n_beats);
        for c in candidates.iter() {
            let m = &self.states[c.idx];
            if c.beat {
                beats.push(Beat {
                    // Tables hold at most `max_nodes` entries.
                    position: u32::try_from(c.idx).unwrap_or(u32::MAX),
                    generation: m.generation,
                    heartbeat: m.heartbeat,
                });
                continue;
            }
            let cold = &self.members[c.idx];
            delta.push({
                size += c.size;
                NodeDelta {
                    node_id: cold.id.clone(),
                    generation: m.generation,
                    heartbeat: m.heartbeat,
                    status: self.flags[c.idx].status,
                    from_version: c.from_version,
                    version: m.version,
                    // Not `to_string`: that goes through the formatter.
                    address: c.full.then(|| String::from(&*cold.meta.address)),
                    kv: if c.from_version >= m.version {
                        KvEntries::default()
                    } else {
                        cold.meta.kv.newer_than(c.from_version)
                    },
                }
            });
        }
        if !beats.is_empty() {
            let p = Positions {
                beats,
                ..Positions::default()
            };
            size += p.beats_size() - size::array(0);
            beats = p.beats;
        }
        // The empty message already counts an empty delta array.
        (delta, beats, size - size::array(0))
    }

    /// True when a digest's claim that this node is at generation
    /// `claimed` may be refuted; otherwise it is counted as implausible.
    ///
    /// A digest claim is held by no one else (unlike a delta, which every
    /// receiver adopts and relays), so the refutation `claimed + 1` must
    /// itself be plausible to nodes that know the current generation.
    /// Without this, one forged SYN claiming generation `u64::MAX - 1`
    /// moved the node to `u64::MAX`, a generation every peer drops as
    /// implausible: its heartbeats were ignored cluster-wide and it was
    /// judged dead, across restarts, until its `data_dir` was wiped.
    fn refutable_claim(&mut self, claimed: u64) -> bool {
        let own = self.states[self.self_idx()].generation;
        let ok = claimed < own.saturating_add(MAX_GENERATION_JUMP);
        if !ok {
            self.stats.entries_implausible += 1;
        }
        ok
    }

    /// Moves this node to a generation above `claimed`, so its own state
    /// supersedes whatever was said about it.
    fn refute(&mut self, claimed: u64) {
        let idx = self.self_idx();
        let me = &mut self.states[idx];
        if self.flags[idx].status != Status::Alive {
            return;
        }
        let Some(new) = me.generation.max(claimed).checked_add(1) else {
            return;
        };
        let old = me.generation;
        me.generation = new;
        me.heartbeat = 0;
        self.stats.refutations += 1;
        self.events.push_back(Event::SelfRefuted {
            old_generation: old,
            new_generation: new,
        });
    }

    /// Applies node states received from `from`.
    fn apply_delta(&mut self, now: Timestamp, from: &NodeId, mut delta: Vec<NodeDelta>) {
        // Positions do not move until `insert` at the end: `update`
        // changes one entry in place and `admit` only builds new ones.
        let self_idx = self.self_idx();
        let mut fresh: Vec<Row> = Vec::new();
        let mut refute = None;
        let mut i = 0;
        // By reference: a state is ~100 bytes and most are only read.
        for d in &mut delta {
            // The delta is sorted, like the table: merge.
            i = seek(&self.members, &self.keys, i, &d.node_id);
            let known = self.members.get(i).is_some_and(|m| m.id == d.node_id);
            if known && i == self_idx {
                let me = &self.states[i];
                if behind(me, d.generation, d.heartbeat, d.version)
                    || (d.generation == me.generation && d.status > self.flags[i].status)
                {
                    refute = Some(d.generation);
                }
                continue;
            }
            if known {
                self.update(i, now, from, d);
            } else if let Some(e) = self.admit(now, from, d) {
                fresh.push(e);
            }
        }
        if let Some(g) = refute {
            let idx = self.self_idx();
            if d_plausible(self.states[idx].generation, g) {
                self.refute(g);
            } else {
                self.stats.entries_implausible += 1;
            }
        }
        if !fresh.is_empty() {
            self.insert(now, fresh);
        }
    }

    /// Applies heartbeat-only news by position (the sender holds this
    /// table): the same-generation heartbeat step of
    /// [`update`](Self::update), without any id to look up. Reads and
    /// writes only the table's dense columns (and, at an observer, the
    /// detector).
    fn apply_beats(&mut self, now: Timestamp, from: &NodeId, beats: &[Beat]) {
        if beats.is_empty() {
            return;
        }
        let self_idx = self.self_idx();
        // Looked up only when needed: in a settled cluster every node is
        // watched, and the search would be most of a small message's work.
        let mut sender: Option<Option<usize>> = None;
        let mut refute = None;
        // Read what the loop below will touch first, in a loop of
        // independent reads: their cache misses then overlap instead of
        // stalling each beat in turn (the loop's body is too long for the
        // processor to run ahead into the next beats).
        let mut acc = 0u64;
        for b in beats {
            if let Some(m) = self.states.get(b.position as usize) {
                acc ^= m.heartbeat;
            }
        }
        std::hint::black_box(acc);
        if self.config.local_detection {
            warm_detectors(&self.members, beats.iter().map(|b| b.position as usize));
        }
        for b in beats {
            let i = b.position as usize;
            // Beyond the table: not this table after all (a forger's).
            let Some(m) = self.states.get_mut(i) else {
                continue;
            };
            if i == self_idx {
                if behind(m, b.generation, b.heartbeat, m.version) {
                    refute = Some(b.generation);
                }
                continue;
            }
            // Another generation needs its full state; an old one is
            // stale.
            if b.generation != m.generation {
                continue;
            }
            let advanced = b.heartbeat > m.heartbeat;
            if advanced {
                m.heartbeat = b.heartbeat;
            }
            let generation = m.generation;
            let flags = &mut self.flags[i];
            // The node's own word over its authenticated connection is
            // proof it runs, even without a newer heartbeat.
            let direct = !flags.watched
                && *sender.get_or_insert_with(|| find_in(&self.members, &self.keys, from))
                    == Some(i);
            if flags.status == Status::Alive && (advanced || direct) {
                let row = RowMut {
                    entry: &mut self.members[i],
                    generation,
                    flags,
                    heard: &mut self.heard[i],
                };
                observe(row, now, &self.config, &mut self.events, true);
            }
        }
        if let Some(g) = refute {
            if d_plausible(self.states[self_idx].generation, g) {
                self.refute(g);
            } else {
                self.stats.entries_implausible += 1;
            }
        }
    }

    /// A state for an unknown node: the new row, if acceptable.
    fn admit(&mut self, now: Timestamp, from: &NodeId, d: &mut NodeDelta) -> Option<Row> {
        if let Some(&(g, h, _)) = self.forgotten.get(&d.node_id) {
            if d.generation < g || (d.generation == g && d.heartbeat <= h) {
                // A stale copy of a node forgotten here: no news.
                return None;
            }
            self.forgotten.remove(&d.node_id);
        }
        let own = self.states[self.self_idx()].generation;
        if !d_plausible(own, d.generation) && *from != d.node_id {
            self.stats.entries_implausible += 1;
            return None;
        }
        // Only a full state can start an entry.
        let address = d.address.take().filter(|_| d.from_version == 0)?;
        let kv = match self.kv_from(std::mem::take(&mut d.kv)) {
            Some(x) => x,
            None => {
                self.stats.kv_rejected += 1;
                return None;
            }
        };
        let mut r = Row {
            entry: Entry {
                id: d.node_id.clone(),
                since: now,
                detector: None,
                meta: Meta::new(Arc::from(address), kv),
            },
            state: Versions {
                generation: d.generation,
                heartbeat: d.heartbeat,
                version: d.version,
            },
            flags: Flags::new(d.status),
            heard: now,
        };
        // A node's own word about itself, over its authenticated
        // connection, is proof it is running: watch it at once. Hearsay
        // waits for a heartbeat that advances.
        if r.flags.status == Status::Alive && r.entry.id == *from {
            let row = RowMut {
                entry: &mut r.entry,
                generation: r.state.generation,
                flags: &mut r.flags,
                heard: &mut r.heard,
            };
            observe(row, now, &self.config, &mut self.events, true);
        } else if r.flags.status != Status::Alive {
            self.events.push_back(Event::NodeLeft {
                node: r.entry.id.clone(),
                generation: r.state.generation,
            });
        }
        Some(r)
    }

    /// Key/values of a full state, if within the cap.
    fn kv_from(&self, entries: KvEntries) -> Option<KvList> {
        let bytes: usize = entries.iter().map(|k| k.key.len() + k.value.len()).sum();
        if bytes > self.config.max_kv_bytes_per_node {
            return None;
        }
        // Validated messages carry keys strictly ascending.
        Some(KvList::from_sorted(entries))
    }

    /// Inserts admitted rows, displacing nodes that are not alive when
    /// the table is full.
    fn insert(&mut self, now: Timestamp, mut fresh: Vec<Row>) {
        let room = self.config.max_nodes.saturating_sub(self.members.len());
        if fresh.len() > room {
            let need = fresh.len() - room;
            let self_idx = self.self_idx();
            // Never confirmed first, then left, then dead; oldest first.
            let mut evictable: Vec<(u8, Timestamp, usize)> = self
                .members
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != self_idx)
                .filter_map(|(i, e)| {
                    let class = match self.flags[i].member_status(false) {
                        MemberStatus::Joining => 0,
                        MemberStatus::Left | MemberStatus::Leaving => 1,
                        MemberStatus::Dead => 2,
                        MemberStatus::Alive => return None,
                    };
                    Some((class, e.since, i))
                })
                .collect();
            evictable.sort();
            evictable.truncate(need);
            let evict = evictable.len();
            let mut keep = vec![true; self.members.len()];
            for (_, _, i) in evictable {
                keep[i] = false;
            }
            for (i, e) in self.members.iter().enumerate() {
                if !keep[i] {
                    let s = self.states[i];
                    self.forgotten
                        .insert(e.id.clone(), (s.generation, s.heartbeat, now));
                    // The runtime keys per-node state on the events it was
                    // given (joined, left): it must hear that the node is
                    // gone, or every displaced node leaks that state.
                    if self.flags[i].member_status(false) != MemberStatus::Joining {
                        self.events
                            .push_back(Event::NodeRemoved { node: e.id.clone() });
                    }
                }
            }
            self.retain_rows(&keep);
            self.reindex();
            self.stats.nodes_evicted += evict as u64;
            let keep = room + evict;
            if fresh.len() > keep {
                self.stats.nodes_rejected_cap += (fresh.len() - keep) as u64;
                // Drop the events of the entries that will not be kept.
                for r in fresh.drain(keep..) {
                    self.events.retain(|ev| !event_is_about(ev, &r.entry.id));
                }
            }
        }
        // Two sorted runs (the delta was sorted): merge them, column by
        // column.
        let n = self.members.len() + fresh.len();
        let mut members = Vec::with_capacity(n);
        let mut states = Vec::with_capacity(n);
        let mut flags = Vec::with_capacity(n);
        let mut heard = Vec::with_capacity(n);
        let old_members = std::mem::take(&mut self.members);
        let mut old = old_members
            .into_iter()
            .zip(self.states.iter().zip(&self.flags).zip(&self.heard))
            .peekable();
        let mut fresh = fresh.into_iter().peekable();
        loop {
            let take_old = match (old.peek(), fresh.peek()) {
                (Some(a), Some(b)) => a.0.id < b.entry.id,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_old {
                if let Some((e, ((s, f), h))) = old.next() {
                    members.push(e);
                    states.push(*s);
                    flags.push(*f);
                    heard.push(*h);
                }
            } else if let Some(r) = fresh.next() {
                members.push(r.entry);
                states.push(r.state);
                flags.push(r.flags);
                heard.push(r.heard);
            }
        }
        drop(old);
        self.members = members;
        self.states = states;
        self.flags = flags;
        self.heard = heard;
        self.reindex();
    }

    /// Applies a state to known member `i`.
    fn update(&mut self, i: usize, now: Timestamp, from: &NodeId, d: &mut NodeDelta) {
        let cap = self.config.max_kv_bytes_per_node;
        let m = self.states[i];
        if d.generation < m.generation {
            return;
        }
        if d.generation > m.generation {
            // The jump limit stops others from pushing a node's generation;
            // the node's own word, over its authenticated connection, is
            // taken whatever it says. That is how a node's refutation of a
            // forged generation at the very edge of the limit (which lands
            // one past it) reaches peers that never adopted the forgery.
            if !d_plausible(m.generation, d.generation) && *from != d.node_id {
                self.stats.entries_implausible += 1;
                return;
            }
            let Some(address) = d.address.take().filter(|_| d.from_version == 0) else {
                // A partial state of a generation not known yet cannot be
                // applied; the next exchange brings the full one.
                return;
            };
            let Some(kv) = self.kv_from(std::mem::take(&mut d.kv)) else {
                self.stats.kv_rejected += 1;
                return;
            };
            let e = &mut self.members[i];
            let flags = &mut self.flags[i];
            // The runtime was told about it (joined, dead or left): this
            // is a restart. Otherwise it was only heard of: a join.
            let was_known = flags.watched || flags.status != Status::Alive;
            let old_generation = m.generation;
            let mut detector = e.detector.take();
            self.states[i] = Versions {
                generation: d.generation,
                heartbeat: d.heartbeat,
                version: d.version,
            };
            *flags = Flags::new(d.status);
            e.meta = Meta::new(Arc::from(address), kv);
            e.since = now;
            if was_known {
                self.events.push_back(Event::NodeRestarted {
                    node: e.id.clone(),
                    old_generation,
                    new_generation: d.generation,
                });
            }
            if flags.status == Status::Alive {
                // A new generation counts as a heartbeat: the restart
                // supersedes the old incarnation at once, with a fresh
                // window (reusing the old one's allocation).
                if let Some(det) = detector.as_mut() {
                    det.reset();
                }
                e.detector = detector;
                let row = RowMut {
                    entry: e,
                    generation: d.generation,
                    flags,
                    heard: &mut self.heard[i],
                };
                observe(row, now, &self.config, &mut self.events, !was_known);
            } else {
                self.events.push_back(Event::NodeLeft {
                    node: e.id.clone(),
                    generation: d.generation,
                });
            }
            return;
        }
        // Same generation: metadata (key/values, status), then heartbeat.
        if d.version > m.version && d.from_version <= m.version {
            let e = &self.members[i];
            let mut bytes = e.meta.kv_bytes;
            for kv in &d.kv {
                match e.meta.kv.get(&kv.key) {
                    Some(old) if old.version >= kv.version => {}
                    Some(old) => bytes = bytes - old.value.len() + kv.value.len(),
                    None => bytes += kv.key.len() + kv.value.len(),
                }
            }
            if bytes > cap {
                self.stats.kv_rejected += 1;
            } else {
                let e = &mut self.members[i];
                for kv in std::mem::take(&mut d.kv).iter() {
                    let newer = e
                        .meta
                        .kv
                        .get(&kv.key)
                        .is_none_or(|old| old.version < kv.version);
                    if newer {
                        e.meta.kv.set(kv.clone());
                    }
                }
                e.meta.recount();
                self.states[i].version = d.version;
                let flags = &mut self.flags[i];
                if d.status > flags.status {
                    let was_alive = flags.status == Status::Alive;
                    flags.status = d.status;
                    if was_alive {
                        // Leaving is final for this generation: stop
                        // watching, never judge it dead.
                        e.detector = None;
                        flags.watched = false;
                        flags.dead = false;
                        e.since = now;
                        self.events.push_back(Event::NodeLeft {
                            node: e.id.clone(),
                            generation: m.generation,
                        });
                    }
                }
            }
        }
        let s = &mut self.states[i];
        let advanced = d.heartbeat > s.heartbeat;
        if advanced {
            s.heartbeat = d.heartbeat;
        }
        let flags = &mut self.flags[i];
        // The node's own word over its authenticated connection is proof
        // it runs, even without a newer heartbeat.
        let direct = !flags.watched && *from == d.node_id;
        if flags.status == Status::Alive && (advanced || direct) {
            let row = RowMut {
                entry: &mut self.members[i],
                generation: m.generation,
                flags,
                heard: &mut self.heard[i],
            };
            observe(row, now, &self.config, &mut self.events, true);
        }
    }
}

/// What [`observe`] changes of one table row, borrowed column by column.
/// The cold `entry` is only read or written when needed (a detector to
/// feed, an event to name), so a beat at a node without local detection
/// touches only the dense columns.
struct RowMut<'a> {
    entry: &'a mut Entry,
    generation: u64,
    flags: &'a mut Flags,
    heard: &'a mut Timestamp,
}

/// Records a heartbeat of a row at the local `now`: starts watching it
/// (announcing the join when `announce_join`), or clears a dead verdict.
fn observe(
    r: RowMut<'_>,
    now: Timestamp,
    config: &GossipConfig,
    events: &mut VecDeque<Event>,
    announce_join: bool,
) {
    // Only judgement reads the last arrival, and only with local
    // detection: without it the column is not written either.
    if config.local_detection {
        *r.heard = now;
    }
    if r.flags.watched {
        // Without local detection there is never a detector: its slot is
        // not even read.
        if config.local_detection {
            if let Some(d) = r.entry.detector.as_mut() {
                d.record(now);
            }
        }
        if r.flags.dead {
            r.flags.dead = false;
            r.entry.since = now;
            events.push_back(Event::NodeAlive {
                node: r.entry.id.clone(),
                generation: r.generation,
            });
        }
    } else {
        if config.local_detection {
            // A restart hands over the previous generation's detector,
            // reset, to reuse its allocation.
            r.entry
                .detector
                .get_or_insert_with(|| Box::new(PeerDetector::new(&config.detector)))
                .record(now);
        }
        r.flags.watched = true;
        r.flags.dead = false;
        r.entry.since = now;
        if announce_join {
            events.push_back(Event::NodeJoined {
                node: r.entry.id.clone(),
                generation: r.generation,
                address: String::from(&*r.entry.meta.address),
            });
        }
    }
    if config.heartbeat_events {
        events.push_back(Event::HeartbeatObserved {
            node: r.entry.id.clone(),
            generation: r.generation,
            at: now,
        });
    }
}

/// Upper bound of a beat's encoded size, as `candidate` counts it before
/// the answer is built: the gap to the previous beat is at most the
/// position itself.
fn beat_size_bound(b: &Beat) -> usize {
    size::uint(u64::from(b.position)) + size::uint(b.generation) + size::uint(b.heartbeat)
}

/// Reads the detectors of the members at `positions` in a loop of
/// independent reads ([`PeerDetector::warm`]), so that their cache misses
/// overlap before a loop that uses them one at a time.
fn warm_detectors(members: &[Entry], positions: impl Iterator<Item = usize>) {
    let mut acc = 0u64;
    for i in positions {
        if let Some(d) = members.get(i).and_then(|e| e.detector.as_ref()) {
            acc ^= d.warm();
        }
    }
    std::hint::black_box(acc);
}

/// Keeps the items of `v` whose `keep` is true.
fn retain_mask<T>(v: &mut Vec<T>, keep: &[bool]) {
    let mut k = 0;
    v.retain(|_| {
        k += 1;
        keep[k - 1]
    });
}

/// The position of `id` in a table sorted by id ([`seek`] from the start).
fn find_in(members: &[Entry], keys: &[u64], id: &NodeId) -> Option<usize> {
    let k = seek(members, keys, 0, id);
    (k < members.len() && members[k].id == *id).then_some(k)
}

/// The first position at or after `from` whose id is not below `id`, in
/// a table sorted by id (`members.len()` if none); `keys` holds the
/// members' [`NodeId::prefix_key`]s, so most steps compare two integers.
/// Steps over a short gap (the usual one between the ids of a delta or
/// request) and gallops over a long one: a sparse delta or request is
/// merged in a few comparisons per id rather than one per table entry.
#[inline]
fn seek(members: &[Entry], keys: &[u64], from: usize, id: &NodeId) -> usize {
    const STEPS: usize = 8;
    debug_assert_eq!(members.len(), keys.len());
    let key = id.prefix_key();
    let n = keys.len();
    // An id of at most 8 bytes is its key and its length: equal keys and
    // lengths mean equal ids (the usual end of a seek).
    let short = (id.len() <= 8).then_some(id.len());
    let mut lo = from;
    let stop = n.min(from + STEPS);
    while lo < stop {
        let k = keys[lo];
        if k > key
            || (k == key && (short == Some(members[lo].id.len()) || !id_below(&members[lo].id, id)))
        {
            return lo;
        }
        lo += 1;
    }
    if lo >= n {
        return lo;
    }
    seek_far(members, keys, lo, id)
}

/// The rest of [`seek`] (every entry before `lo` is below `id`): double
/// the step until an entry is not below, then bisect.
#[inline(never)]
fn seek_far(members: &[Entry], keys: &[u64], mut lo: usize, id: &NodeId) -> usize {
    let key = id.prefix_key();
    let n = keys.len();
    let short = (id.len() <= 8).then_some(id.len());
    // Keys decide unless equal (then so are the first 8 bytes).
    let below = |k: usize| {
        keys[k] < key
            || (keys[k] == key
                && short != Some(members[k].id.len())
                && id_below(&members[k].id, id))
    };
    let mut step = 1;
    let mut hi = n;
    loop {
        let probe = lo + step - 1;
        if probe >= n {
            break;
        }
        if !below(probe) {
            hi = probe;
            break;
        }
        lo = probe + 1;
        step *= 2;
    }
    // Binary search of [lo, hi): below(lo - 1) holds, below(hi) does not.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if below(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// `a < b`, out of line: [`seek`] needs it only when prefix keys tie, and
/// inlined it would load the needle's every word up front on every call.
#[inline(never)]
fn id_below(a: &NodeId, b: &NodeId) -> bool {
    a < b
}

thread_local! {
    /// Room for the beats and the request of one positional SYN's answer,
    /// a table's length each, reused across answers (and across the cores
    /// a thread runs) instead of grown per answer.
    static POSITIONAL_SCRATCH: std::cell::RefCell<(Vec<Beat>, Vec<PositionEntry>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The digests of one round, each built at most once and shared by its
/// SYNs: by id (when it covers the whole table) and by position (`None`
/// inside when the table does not fit a message).
#[derive(Default)]
struct RoundDigests {
    by_id: Option<(Digest, usize)>,
    by_position: Option<Option<(Digest, usize)>>,
}

/// Fingerprint of a table: FNV-1a over its ids in order, each preceded by
/// its length, with the top bit set (never 0, which means "not given",
/// and always 9 bytes on the wire). Two tables with the same fingerprint
/// hold the same ids in the same order, barring a 1-in-2^63 collision;
/// a collision only makes the two read each other's positions wrongly,
/// which is no more than any member could claim by id.
fn table_fingerprint(members: &[Entry]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for e in members {
        let id = e.id.as_bytes();
        // Ids are at most 255 bytes: the length is one byte.
        for &b in std::iter::once(&(id.len() as u8)).chain(id) {
            h = (h ^ u64::from(b)).wrapping_mul(PRIME);
        }
    }
    h | 1 << 63
}

fn versions_of(e: &DigestEntry) -> Versions {
    Versions {
        generation: e.generation,
        heartbeat: e.heartbeat,
        version: e.version,
    }
}

/// True when the local entry `m` is ahead of what a partner knows.
fn ahead(m: &Versions, generation: u64, heartbeat: u64, version: u64) -> bool {
    m.generation > generation
        || (m.generation == generation && (m.heartbeat > heartbeat || m.version > version))
}

/// True when a partner knows more of `m` than the local entry holds.
fn behind(m: &Versions, generation: u64, heartbeat: u64, version: u64) -> bool {
    generation > m.generation
        || (generation == m.generation && (heartbeat > m.heartbeat || version > m.version))
}

fn opt_id_size(id: Option<&NodeId>) -> usize {
    id.map_or(size::NIL, |i| size::str(i.len()))
}

/// True when `claimed` is an acceptable generation after `known` in
/// gossip about a node from anyone but the node itself.
fn d_plausible(known: u64, claimed: u64) -> bool {
    claimed <= known.saturating_add(MAX_GENERATION_JUMP)
}

fn event_is_about(ev: &Event, id: &NodeId) -> bool {
    match ev {
        Event::HeartbeatObserved { node, .. }
        | Event::NodeJoined { node, .. }
        | Event::NodeRestarted { node, .. }
        | Event::NodeLeft { node, .. }
        | Event::NodeDead { node, .. }
        | Event::NodeAlive { node, .. }
        | Event::NodeRemoved { node } => node == id,
        Event::SelfRefuted { .. } => false,
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(id: &str) -> Entry {
        Entry {
            id: NodeId::from(id),
            since: Timestamp::ZERO,
            detector: None,
            meta: Meta::new(Arc::from("a:1"), KvList::default()),
        }
    }

    proptest! {
        /// The galloping seek finds what a linear scan finds, from any
        /// start, for ids in the table and between them.
        #[test]
        fn seek_is_the_linear_merge_step(
            ids in proptest::collection::btree_set(0u32..400, 0..120),
            probes in proptest::collection::vec((0u32..420, 0usize..130), 1..40),
        ) {
            // Sorted as the table is: by the ids' bytes (`n10` < `n9`).
            // Short (inline) ids, and long ones that share their first
            // 8 bytes (equal prefix keys).
            let name = |v: u32| {
                if v % 3 == 0 {
                    format!("node-000.{v}.example.internal")
                } else {
                    format!("n{v}")
                }
            };
            let ids: std::collections::BTreeSet<String> = ids.iter().map(|&v| name(v)).collect();
            let table: Vec<Entry> = ids.iter().map(|v| entry(v)).collect();
            let keys: Vec<u64> = table.iter().map(|e| e.id.prefix_key()).collect();
            for (v, from) in probes {
                let id = NodeId::new(name(v));
                let from = from.min(table.len());
                let mut linear = from;
                while linear < table.len() && table[linear].id < id {
                    linear += 1;
                }
                prop_assert_eq!(seek(&table, &keys, from, &id), linear, "id {} from {}", id, from);
            }
        }
    }
}
