//! The sans-IO protocol core: [`Gossip`].

use crate::auth::{Authority, Signer};
use crate::key::RingKey;
use crate::monitor::{Arrival, Judgement, Monitor, VerdictChange};
use crate::record::{Declared, KeyValue, MAX_KEY_LEN, Record, RecordBody, RecordError};
use crate::table::{Change, Table};
use crate::wire::{Channel, Frame, Heartbeat, Probe, Records};
use crate::{GossipConfig, GossipError, NodeId, Status};
use phimon_detector::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// How long a node keeps sending heartbeats to an observer it no longer
/// counts as one, in intervals: covers the time the observer takes to
/// learn the same change, so it never waits for heartbeats that stopped.
const TARGET_LINGER: u32 = 3;

/// Every how many intervals a node probes one of its fingers (see
/// [`Gossip::finger_peer`]). Heartbeats already compare fingerprints with
/// the observers every interval and news is pushed at once; probes catch
/// what both miss (views that drift apart along the ring) and cost a
/// packet and its answer each.
const PROBE_EVERY: u64 = 5;

/// Every how many intervals a node also probes a member it does not count
/// as live (or a seed), so partitions heal.
const HEAL_EVERY: u64 = 10;

/// Intervals a leaving node announces `leaving` before `left`.
const LEAVE_LINGER: u32 = 1;

/// Where a frame goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The node, when known; the transport checks the peer's certificate
    /// against it. `None` for a seed address.
    pub node: Option<NodeId>,
    /// `host:port`; empty means "on the node's existing connection" (a
    /// node whose record this node does not have yet).
    pub addr: Arc<str>,
}

/// A frame to send, from [`Gossip::poll_transmit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The destination.
    pub to: Peer,
    /// The frame; its [`Frame::channel`] says how to send it.
    pub frame: Frame,
}

/// Something the runtime (alert engine, logs, metrics) should know.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The first record of a node arrived.
    Joined {
        /// The node.
        node: NodeId,
        /// Its generation.
        generation: u64,
        /// Its address.
        address: String,
    },
    /// A node's record of a newer generation replaced the old one: it
    /// restarted.
    Restarted {
        /// The node.
        node: NodeId,
        /// The generation replaced.
        old_generation: u64,
        /// The new one.
        new_generation: u64,
    },
    /// A node's fleet status changed, as this node sees it.
    Status {
        /// The node.
        node: NodeId,
        /// Its generation.
        generation: u64,
        /// The status before.
        from: Status,
        /// The status now.
        to: Status,
    },
    /// A node was forgotten (after `dead_grace` suspected, leaving or
    /// left).
    Removed {
        /// The node.
        node: NodeId,
    },
    /// This node's own verdict on a subject changed.
    Verdict {
        /// The subject.
        subject: NodeId,
        /// Its generation.
        generation: u64,
        /// Suspected (phi crossed the threshold) or alive.
        suspected: bool,
        /// Its phi when the verdict changed.
        phi: f64,
    },
    /// This node started or stopped observing a node.
    Observing {
        /// The subject.
        subject: NodeId,
        /// Started (true) or stopped.
        started: bool,
    },
    /// This node moved to a new generation because a record of its own
    /// from a previous life was newer than its current one. The runtime
    /// must persist `new`.
    GenerationBumped {
        /// The generation given up.
        old: u64,
        /// The one now in use.
        new: u64,
    },
    /// This node lost (or regained) contact with most of its subjects at
    /// once: it reports that instead of suspecting them.
    Isolation {
        /// Isolated (true) or back in contact.
        isolated: bool,
        /// This node's generation and the version of its record that its
        /// peers last confirmed: the fleet names an incident about this
        /// node after it, so both sides name one incident alike.
        generation: u64,
        /// See `generation`.
        version: u64,
    },
    /// A heartbeat was recorded (only with
    /// [`GossipConfig::heartbeat_events`]).
    Heartbeat {
        /// The sender.
        node: NodeId,
        /// Its generation.
        generation: u64,
        /// Its sequence number.
        seq: u64,
        /// Local arrival time.
        at: Timestamp,
    },
}

/// Counters of what the core refused or did on its own. Every field only
/// grows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// Records accepted (new nodes and newer versions).
    pub records_accepted: u64,
    /// Records that were already known (same or older version).
    pub records_known: u64,
    /// Records refused, by reason ([`RecordError::label`], `full`,
    /// `collision`, `forgotten`): forgeries are `forged` and `signature`.
    pub records_rejected: BTreeMap<&'static str, u64>,
    /// Heartbeats recorded.
    pub heartbeats: u64,
    /// Heartbeats from nodes this node does not observe.
    pub heartbeats_unexpected: u64,
    /// Heartbeats of an older generation.
    pub heartbeats_stale: u64,
    /// Heartbeats repeated or out of order.
    pub heartbeats_reordered: u64,
    /// Reconciliations this node started.
    pub syncs: u64,
    /// Reconciliations not started because one with that peer started
    /// less than an interval ago.
    pub syncs_limited: u64,
    /// Records of this node's own from a previous life that made it move
    /// to a new generation.
    pub refutations: u64,
    /// Such records ignored because a refutation happened recently.
    pub refutations_limited: u64,
    /// Versions of its own record this node signed.
    pub own_records: u64,
}

/// A record to push on.
#[derive(Debug, Clone)]
pub(crate) struct Push {
    pub(crate) record: Arc<Record>,
    /// The node it came from (never pushed back there).
    pub(crate) from: Option<NodeId>,
    /// Its credential is the one of the previous version of the same
    /// generation, which every node holding that version has: it is sent
    /// without it.
    pub(crate) lean: bool,
}

/// How far this node is in leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leave {
    Staying,
    /// `leaving` announced at this time.
    Leaving(Timestamp),
    /// `left` announced.
    Left,
}

/// A node this node sends heartbeats to.
#[derive(Debug, Clone)]
struct Target {
    peer: Peer,
    /// Still sent to until then after it stopped being an observer.
    until: Option<Timestamp>,
}

/// What this node states about itself.
#[derive(Debug)]
struct Me {
    id: NodeId,
    key: RingKey,
    address: Arc<str>,
    generation: u64,
    version: u64,
    status: Declared,
    kv: Vec<KeyValue>,
    record: Arc<Record>,
    /// The version its peers last confirmed (a peer's fingerprint equal
    /// to this node's means the peer holds its current record).
    confirmed: u64,
}

/// A settled table to start many cores from at once (simulators): every
/// record verified by the caller, every status decided once.
#[derive(Debug)]
pub struct Snapshot {
    table: Table,
}

impl Snapshot {
    /// A snapshot holding `records` (one per node, already verified), with
    /// `observers` per node, decided as of `now`.
    pub fn new(records: &[Arc<Record>], observers: usize, now: Timestamp) -> Option<Snapshot> {
        let first = records.first()?.clone();
        let mut table = Table::settled(first, records, observers, usize::MAX, now);
        table.settle(now);
        Some(Snapshot { table })
    }

    /// Each node's observers by ring position, for a simulator that
    /// writes the records' verdicts: `(node, its subjects)`.
    pub fn subjects(&self) -> Vec<(NodeId, Vec<NodeId>)> {
        let e = self.table.entries();
        (0..e.len())
            .map(|i| {
                let subjects = self
                    .table
                    .subjects_of(i)
                    .into_iter()
                    .map(|j| e[j].record.node().clone())
                    .collect();
                (e[i].record.node().clone(), subjects)
            })
            .collect()
    }
}

/// Most members a reachability check probes: everyone in a small fleet,
/// a random sample in a large one.
const REACH_PROBES: usize = 16;

/// Every how many intervals an isolated node checks again.
const REACH_AGAIN: u32 = 3;

/// A reachability check: whom this node asked, who answered, until when.
#[derive(Debug)]
struct ReachCheck {
    until: Timestamp,
    asked: Vec<NodeId>,
    answered: HashSet<NodeId>,
}

/// Isolation bookkeeping.
#[derive(Debug, Clone, Copy)]
struct Isolation {
    generation: u64,
    version: u64,
}

/// The protocol core of one node: signed membership, anti-entropy by
/// fingerprint, direct heartbeats to its observers, and its verdicts on
/// the nodes it observes. Sans-IO: no clock, no socket, no thread.
///
/// Call order, all with the caller's monotonic `now`:
/// 1. [`new`](Self::new) once (the caller persists the generation and
///    passes a larger one on every start).
/// 2. For every datagram or message received:
///    [`handle_datagram`](Self::handle_datagram) /
///    [`handle_message`](Self::handle_message) with the sender's id from
///    its certificate and the arrival time.
/// 3. At [`poll_timeout`](Self::poll_timeout):
///    [`handle_timeout`](Self::handle_timeout).
/// 4. After each of the above, drain [`poll_transmit`](Self::poll_transmit)
///    and [`poll_event`](Self::poll_event), and re-arm the one timer at
///    [`poll_timeout`](Self::poll_timeout).
///
/// Local requests: [`set_kv`](Self::set_kv), [`leave`](Self::leave),
/// [`observer_stalled`](Self::observer_stalled). Reads:
/// [`members`](Self::members), [`member`](Self::member),
/// [`subjects`](Self::subjects), [`stats`](Self::stats).
///
/// phi is computed only from the heartbeats a subject sends this node
/// itself, stamped with the local clock at arrival.
pub struct Gossip {
    pub(crate) cfg: GossipConfig,
    me: Me,
    signer: Box<dyn Signer>,
    pub(crate) authority: Box<dyn Authority>,
    pub(crate) table: Table,
    pub(crate) monitor: Monitor,
    targets: Vec<Target>,
    pub(crate) rng: StdRng,
    pub(crate) outbox: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: GossipStats,
    next_beat: Timestamp,
    seq: u64,
    round: u64,
    pub(crate) last_sync: HashMap<NodeId, Timestamp>,
    /// Records new to this node, to push on.
    pub(crate) pushes: Vec<Push>,
    /// The ring near this node may have changed: recompute subjects and
    /// targets.
    pub(crate) ring_dirty: bool,
    own_dirty: bool,
    /// Sign a new version even if nothing changed (a refutation).
    force_own: bool,
    leave: Leave,
    isolation: Option<Isolation>,
    /// The reachability check in progress.
    reach: Option<ReachCheck>,
    /// When an isolated node checks again.
    reach_again: Option<Timestamp>,
    last_refutation: Option<Timestamp>,
    seeds: Vec<Arc<str>>,
    seed_cursor: usize,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("id", &self.me.id)
            .field("generation", &self.me.generation)
            .field("members", &self.table.len())
            .field("subjects", &self.monitor.subjects.len())
            .finish_non_exhaustive()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Gossip {
    /// A core for node `id`, reachable at `address`, in `generation`
    /// (≥ 1). `signer` signs this node's record; `authority` verifies
    /// everyone else's. `seed` drives every random choice; the first
    /// heartbeat goes out at a random point within one interval of `now`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: GossipConfig,
        id: NodeId,
        address: impl Into<String>,
        generation: u64,
        signer: Box<dyn Signer>,
        authority: Box<dyn Authority>,
        seed: u64,
        now: Timestamp,
    ) -> Result<Gossip, GossipError> {
        Self::build(
            config, id, address, generation, signer, authority, seed, now, None,
        )
    }

    /// A core that starts from a [`Snapshot`] holding this node's own
    /// record (`own`, signed by `signer`'s key) and everyone else's: how a
    /// simulator starts a settled cluster of thousands of nodes without
    /// each one joining and deciding every status again.
    pub fn from_snapshot(
        config: GossipConfig,
        own: &Arc<Record>,
        signer: Box<dyn Signer>,
        authority: Box<dyn Authority>,
        seed: u64,
        now: Timestamp,
        snapshot: &Snapshot,
    ) -> Result<Gossip, GossipError> {
        let body = own.body();
        let table = snapshot.table.for_node(own.key()).ok_or_else(|| {
            GossipError::OwnRecord(RecordError::Invalid(
                "own record not in the snapshot".into(),
            ))
        })?;
        Self::build(
            config,
            body.node.clone(),
            body.address.clone(),
            body.generation,
            signer,
            authority,
            seed,
            now,
            Some((own.clone(), table)),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        config: GossipConfig,
        id: NodeId,
        address: impl Into<String>,
        generation: u64,
        mut signer: Box<dyn Signer>,
        authority: Box<dyn Authority>,
        seed: u64,
        now: Timestamp,
        start: Option<(Arc<Record>, Table)>,
    ) -> Result<Gossip, GossipError> {
        let cfg = config.clamped();
        let address: Arc<str> = Arc::from(address.into());
        let generation = generation.max(1);
        let body = RecordBody {
            cluster: cfg.cluster.clone(),
            node: id.clone(),
            generation,
            version: 1,
            address: address.to_string(),
            status: Declared::Alive,
            kv: Vec::new(),
            verdicts: Vec::new(),
        };
        body.check(cfg.max_kv_bytes)
            .map_err(GossipError::OwnRecord)?;
        // A snapshot start is warm: the cluster has been running.
        let warm = start.is_some();
        let (record, table) = match start {
            Some((own, table)) => (own, table),
            None => {
                let record =
                    Arc::new(Record::sign(body, signer.as_mut()).map_err(GossipError::OwnRecord)?);
                let table = Table::new(record.clone(), cfg.observers, cfg.max_nodes, now);
                (record, table)
            }
        };
        let (version, kv) = {
            let b = record.body();
            (b.version, b.kv.clone())
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let interval = micros(cfg.interval).max(1);
        let first = Timestamp::from_micros(
            now.as_micros()
                .saturating_add(rng.random_range(0..interval)),
        );
        let hold = cfg.interval * 3 + Duration::from_secs(1);
        let monitor = Monitor::new(Judgement {
            detector: cfg.detector.clone(),
            threshold: cfg.threshold,
            resolve_threshold: cfg.resolve_threshold,
            for_: cfg.for_,
            hold,
        });
        let seeds = cfg
            .seeds
            .iter()
            .filter(|s| **s != *address)
            .map(|s| Arc::from(s.as_str()))
            .collect();
        let mut g = Gossip {
            me: Me {
                key: record.key(),
                id,
                address,
                generation,
                version,
                status: Declared::Alive,
                kv,
                record,
                confirmed: version,
            },
            cfg,
            signer,
            authority,
            table,
            monitor,
            targets: Vec::new(),
            rng,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            stats: GossipStats::default(),
            next_beat: first,
            seq: 0,
            round: 0,
            last_sync: HashMap::new(),
            pushes: Vec::new(),
            ring_dirty: true,
            own_dirty: false,
            force_own: false,
            leave: Leave::Staying,
            isolation: None,
            reach: None,
            reach_again: None,
            last_refutation: None,
            seeds,
            seed_cursor: 0,
        };
        if warm {
            // A settled start: subjects are taken as heard from, so the
            // verdicts already published stand until phi says otherwise.
            let me = g.table.self_index();
            let wanted = g
                .table
                .subjects_of(me)
                .into_iter()
                .map(|i| {
                    let e = &g.table.entries()[i];
                    (e.key, e.record.node().clone(), e.body().generation)
                })
                .collect();
            g.monitor.set_subjects(wanted, now);
            g.monitor.assume_heard();
            g.monitor.take_changed();
        }
        g.after_change(now);
        Ok(g)
    }

    // ----- inputs -------------------------------------------------------

    /// Decodes and handles a datagram from `from` (the id its certificate
    /// authenticated), received at `now`.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        from: &NodeId,
        bytes: &[u8],
    ) -> Result<(), GossipError> {
        let frame = Frame::decode(bytes, Channel::Datagram, self.cfg.max_message_bytes)?;
        self.handle_frame(now, from, frame)
    }

    /// Decodes and handles a message from `from`, received at `now`.
    pub fn handle_message(
        &mut self,
        now: Timestamp,
        from: &NodeId,
        bytes: &[u8],
    ) -> Result<(), GossipError> {
        let frame = Frame::decode(bytes, Channel::Message, self.cfg.max_message_bytes)?;
        self.handle_frame(now, from, frame)
    }

    /// Handles an already decoded frame: the path both of the above end
    /// in, and the one a simulator uses to skip encoding. The frame is
    /// validated again ([`Frame::validate`]).
    pub fn handle_frame(
        &mut self,
        now: Timestamp,
        from: &NodeId,
        frame: Frame,
    ) -> Result<(), GossipError> {
        frame.validate()?;
        if *from == self.me.id {
            return Err(GossipError::FromSelf);
        }
        match frame {
            Frame::Heartbeat(hb) => self.on_heartbeat(now, from, &hb),
            Frame::Probe(p) => self.on_probe(now, from, &p),
            Frame::Summary(s) => self.on_summary(now, from, s),
            Frame::Digest(d) => self.on_digest(from, d),
            Frame::Records(r) => self.on_records(now, from, r),
        }
        self.after_change(now);
        Ok(())
    }

    fn on_heartbeat(&mut self, now: Timestamp, from: &NodeId, hb: &Heartbeat) {
        let key = RingKey::of(from);
        match self.monitor.heartbeat(key, hb, now) {
            Arrival::Recorded | Arrival::Restarted => {
                self.stats.heartbeats += 1;
                if self.cfg.heartbeat_events {
                    self.events.push_back(Event::Heartbeat {
                        node: from.clone(),
                        generation: hb.generation,
                        seq: hb.seq,
                        at: now,
                    });
                }
            }
            Arrival::Unexpected => self.stats.heartbeats_unexpected += 1,
            Arrival::Stale => self.stats.heartbeats_stale += 1,
            Arrival::Reordered => self.stats.heartbeats_reordered += 1,
        }
        self.on_fingerprint(now, from, hb.fingerprint);
    }

    /// A peer's fingerprint: equal confirms this node's record reached it,
    /// different starts a reconciliation with it.
    pub(crate) fn on_fingerprint(&mut self, now: Timestamp, from: &NodeId, fingerprint: u64) {
        if fingerprint == self.table.fingerprint() {
            self.me.confirmed = self.me.version;
        } else {
            self.start_sync(now, from);
        }
    }

    /// Handles the timer: heartbeats and the probe when due, subjects whose
    /// phi reached a threshold, garbage collection, leaving.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if now >= self.next_beat {
            self.beat(now);
            let interval = self.cfg.interval;
            self.next_beat = self.next_beat + interval;
            if self.next_beat <= now {
                // Far behind (this node stalled): skip the missed beats.
                self.next_beat = now + interval;
            }
        }
        let gone = self.table.collect(now, self.cfg.dead_grace);
        if !gone.is_empty() {
            self.ring_dirty = true;
            for node in gone {
                self.last_sync.remove(&node);
                self.events.push_back(Event::Removed { node });
            }
        }
        if let Leave::Leaving(since) = self.leave {
            if now >= since + self.cfg.interval * LEAVE_LINGER {
                self.me.status = Declared::Left;
                self.own_dirty = true;
                self.leave = Leave::Left;
            }
        }
        self.after_change(now);
    }

    /// New settings of local judgement (a live reload): `threshold`,
    /// `resolve_threshold`, `for_` and `detector` of `config` apply at
    /// once; detectors keep their windows. Every other field of `config`
    /// is ignored (the ring, timing and identity cannot change live).
    pub fn reconfigure(&mut self, config: &GossipConfig, now: Timestamp) {
        let mut cfg = self.cfg.clone();
        cfg.threshold = config.threshold;
        cfg.resolve_threshold = config.resolve_threshold;
        cfg.for_ = config.for_;
        cfg.detector = config.detector.clone();
        let cfg = cfg.clamped();
        let hold = cfg.interval * 3 + Duration::from_secs(1);
        self.monitor.set_judgement(
            Judgement {
                detector: cfg.detector.clone(),
                threshold: cfg.threshold,
                resolve_threshold: cfg.resolve_threshold,
                for_: cfg.for_,
                hold,
            },
            now,
        );
        self.cfg = cfg;
        self.after_change(now);
    }

    /// This node itself was stalled (process paused, event loop blocked)
    /// until `to`: silences are measured from `to` and no new suspicion
    /// is raised for a while, so the stall is never held against peers.
    pub fn observer_stalled(&mut self, to: Timestamp) {
        self.monitor.observer_stalled(to);
    }

    /// Signs this node's record again at the next version, unchanged but
    /// for the signature and credential: after its certificate or key was
    /// replaced, so that peers hold a record with the new credential
    /// before the old certificate expires or is revoked.
    pub fn resign(&mut self) {
        self.own_dirty = true;
        self.force_own = true;
    }

    /// Publishes `key = value` in this node's record.
    pub fn set_kv(&mut self, key: &str, value: &str) -> Result<(), GossipError> {
        let mut kv = self.me.kv.clone();
        match kv.binary_search_by(|e| e.0.as_str().cmp(key)) {
            Ok(i) if kv[i].1 == value => return Ok(()),
            Ok(i) => kv[i].1 = value.to_owned(),
            Err(i) => kv.insert(i, KeyValue(key.to_owned(), value.to_owned())),
        }
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(GossipError::OwnRecord(RecordError::Invalid(format!(
                "key of {} bytes",
                key.len()
            ))));
        }
        let bytes: usize = kv.iter().map(|e| e.0.len() + e.1.len()).sum();
        if bytes > self.cfg.max_kv_bytes {
            return Err(GossipError::OwnRecord(RecordError::Invalid(format!(
                "{bytes} key/value bytes exceed the {}-byte cap",
                self.cfg.max_kv_bytes
            ))));
        }
        self.me.kv = kv;
        self.own_dirty = true;
        Ok(())
    }

    /// Removes `key` from this node's record.
    pub fn remove_kv(&mut self, key: &str) {
        if let Ok(i) = self.me.kv.binary_search_by(|e| e.0.as_str().cmp(key)) {
            self.me.kv.remove(i);
            self.own_dirty = true;
        }
    }

    /// Starts leaving gracefully: announces `leaving` (heartbeats stop,
    /// nobody will page), then `left`. Poll until
    /// [`leave_complete`](Self::leave_complete).
    pub fn leave(&mut self, now: Timestamp) {
        if self.leave == Leave::Staying {
            self.me.status = Declared::Leaving;
            self.own_dirty = true;
            self.leave = Leave::Leaving(now);
            self.targets.clear();
            self.after_change(now);
        }
    }

    /// `left` was announced and nothing is left to send.
    pub fn leave_complete(&self) -> bool {
        self.leave == Leave::Left && !self.own_dirty && self.outbox.is_empty()
    }

    // ----- outputs ------------------------------------------------------

    /// The next frame to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// The next event, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next:
    /// the next heartbeat, the earliest time a subject's phi can reach a
    /// threshold, or the next garbage collection. Nothing else needs the
    /// core between frames.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let mut t = Some(self.next_beat);
        let mut earliest = |x: Option<Timestamp>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        earliest(self.monitor.next_deadline());
        earliest(self.next_isolation_check());
        earliest(self.table.next_collection(self.cfg.dead_grace));
        if let Leave::Leaving(since) = self.leave {
            earliest(Some(since + self.cfg.interval * LEAVE_LINGER));
        }
        t
    }

    // ----- reads --------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.me.id
    }

    /// This node's current generation.
    pub fn generation(&self) -> u64 {
        self.me.generation
    }

    /// This node's signed record.
    pub fn own_record(&self) -> &Arc<Record> {
        &self.me.record
    }

    /// The settings in force (after clamping).
    pub fn config(&self) -> &GossipConfig {
        &self.cfg
    }

    /// Counts every change of a record in the table (a new node, a newer
    /// version, a node forgotten): readers that derive something from the
    /// records (who pages about a suspect) redo it when this moves.
    pub fn table_changes(&self) -> u64 {
        self.table.changes()
    }

    /// The table's fingerprint.
    pub fn fingerprint(&self) -> u64 {
        self.table.fingerprint()
    }

    /// Records known, this node's included.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Never: the table always holds this node's own record.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether this node knows another node (it has joined).
    pub fn joined(&self) -> bool {
        self.table.len() > 1
    }

    /// Whether this node considers itself cut off from the fleet.
    pub fn is_isolated(&self) -> bool {
        self.isolation.is_some()
    }

    /// Whether this node stalled recently: it raises no new suspicion.
    pub fn is_degraded(&self, now: Timestamp) -> bool {
        self.monitor.degraded(now)
    }

    /// Counters.
    pub fn stats(&self) -> &GossipStats {
        &self.stats
    }

    /// The nodes this node sends heartbeats to (its observers, and those
    /// it is handing over from).
    pub fn targets(&self) -> impl Iterator<Item = &Peer> + '_ {
        self.targets.iter().map(|t| &t.peer)
    }

    // ----- heartbeats and probes ---------------------------------------

    fn beat(&mut self, now: Timestamp) {
        self.round += 1;
        self.monitor.sample(now);
        self.targets.retain(|t| t.until.is_none_or(|u| u > now));
        if self.leave == Leave::Staying {
            self.seq += 1;
            let hb = Heartbeat {
                generation: self.me.generation,
                seq: self.seq,
                fingerprint: self.table.fingerprint(),
            };
            for t in &self.targets {
                self.outbox.push_back(Transmit {
                    to: t.peer.clone(),
                    frame: Frame::Heartbeat(hb),
                });
            }
        }
        let probe = Frame::Probe(self.probe(false));
        if !self.joined() {
            self.contact_seed();
            return;
        }
        if self.round % PROBE_EVERY == 0 {
            if let Some(peer) = self.finger_peer(self.round / PROBE_EVERY) {
                self.outbox.push_back(Transmit {
                    to: peer,
                    frame: probe.clone(),
                });
            }
        }
        if self.round % HEAL_EVERY == 0 {
            // A member this node does not count as live, or a seed: if a
            // partition healed, the probe's fingerprint starts the
            // reconciliation that merges the two sides.
            let lost = self.random_lost_peer();
            let to = match lost {
                Some(p) => Some(p),
                None => self.next_seed().map(|addr| Peer { node: None, addr }),
            };
            if let Some(to) = to {
                self.outbox.push_back(Transmit { to, frame: probe });
            }
        }
    }

    fn next_seed(&mut self) -> Option<Arc<str>> {
        if self.seeds.is_empty() {
            return None;
        }
        let s = self.seeds[self.seed_cursor % self.seeds.len()].clone();
        self.seed_cursor = self.seed_cursor.wrapping_add(1);
        Some(s)
    }

    /// Introduces this node to a seed: its record (pushed on from there)
    /// and its summary (the seed answers with what this node lacks).
    fn contact_seed(&mut self) {
        let Some(addr) = self.next_seed() else { return };
        let to = Peer { node: None, addr };
        self.outbox.push_back(Transmit {
            to: to.clone(),
            frame: Frame::Records(Records {
                records: vec![self.me.record.signed().clone()],
                want: Vec::new(),
                relay: true,
            }),
        });
        self.outbox.push_back(Transmit {
            to,
            frame: Frame::Summary(self.summary()),
        });
    }

    /// How to reach table entry `i`.
    pub(crate) fn peer_at(&self, i: usize) -> Peer {
        let e = &self.table.entries()[i];
        Peer {
            node: Some(e.record.node().clone()),
            addr: Arc::from(e.body().address.as_str()),
        }
    }

    /// How to reach `node`: its advertised address when known, else its
    /// existing connection.
    pub(crate) fn peer_of(&self, node: &NodeId) -> Peer {
        let addr = self
            .table
            .get_id(node)
            .map_or_else(|| Arc::from(""), |e| Arc::from(e.body().address.as_str()));
        Peer {
            node: Some(node.clone()),
            addr,
        }
    }

    /// The `nth` probe's peer: the first live member at ring distance
    /// 2^j or more after this node, j cycling from the first distance past
    /// the `k` observers (which heartbeats already compare with) up to
    /// about N, as Chord's fingers. Views then mix in O(log N) hops, and
    /// since the distances are fixed the same few connections stay warm:
    /// a probe rarely costs a handshake, where a uniformly random peer
    /// would almost always need one in a large fleet.
    pub(crate) fn finger_peer(&self, nth: u64) -> Option<Peer> {
        let n = self.table.len();
        if n < 2 {
            return None;
        }
        let first = (usize::BITS - self.cfg.observers.leading_zeros()).min(usize::BITS - 1);
        let last = (usize::BITS - (n - 1).leading_zeros()).max(first + 1);
        let j = first + (nth % u64::from(last - first)) as u32;
        let me = self.table.self_index();
        let start = (1usize << j) % n;
        let live = |i: usize| {
            let e = &self.table.entries()[i];
            i != me && e.body().status == Declared::Alive && e.status != Status::Suspected
        };
        (0..n)
            .map(|d| (me + start.max(1) + d) % n)
            .find(|&i| live(i))
            .map(|i| self.peer_at(i))
    }

    /// A uniformly random member that counts as live, not this node and
    /// not `except`.
    pub(crate) fn random_live_peer(&mut self, except: Option<&NodeId>) -> Option<Peer> {
        let n = self.table.len();
        if n < 2 {
            return None;
        }
        let ok = |t: &Table, i: usize| {
            let e = &t.entries()[i];
            e.key != self.me.key
                && e.body().status == Declared::Alive
                && e.status != Status::Suspected
                && except.is_none_or(|x| x != e.record.node())
        };
        // Live members are most of a table: a few random draws find one
        // in O(1); the scan only decides the rare table where they are not.
        for _ in 0..8 {
            let i = self.rng.random_range(0..n);
            if ok(&self.table, i) {
                return Some(self.peer_at(i));
            }
        }
        let live: Vec<usize> = (0..n).filter(|&i| ok(&self.table, i)).collect();
        if live.is_empty() {
            return None;
        }
        let i = live[self.rng.random_range(0..live.len())];
        Some(self.peer_at(i))
    }

    fn random_lost_peer(&mut self) -> Option<Peer> {
        let lost: Vec<usize> = (0..self.table.len())
            .filter(|&i| {
                let e = &self.table.entries()[i];
                e.key != self.me.key
                    && e.body().status == Declared::Alive
                    && e.status == Status::Suspected
            })
            .collect();
        if lost.is_empty() {
            return None;
        }
        let i = lost[self.rng.random_range(0..lost.len())];
        Some(self.peer_at(i))
    }

    // ----- keeping derived state consistent ----------------------------

    /// After any input: decides statuses, refreshes subjects and targets,
    /// judges due subjects, publishes this node's record if it changed and
    /// pushes what is new. Loops because each step can feed the others
    /// (a new verdict of this node can change a status, which can change
    /// the ring); bounded.
    pub(crate) fn after_change(&mut self, now: Timestamp) {
        for _ in 0..8 {
            let (changes, ring_changed) = self.table.settle(now);
            self.ring_dirty |= ring_changed;
            self.report(changes);
            if self.ring_dirty {
                self.ring_dirty = false;
                self.refresh_ring(now);
            }
            let verdicts = self.monitor.judge(now, false);
            if !verdicts.is_empty() {
                self.on_verdicts(now, verdicts);
            }
            if self.monitor.take_changed() {
                self.own_dirty = true;
            }
            if !self.publish_own(now) {
                break;
            }
        }
        self.check_isolation(now);
        self.flush_pushes();
    }

    fn report(&mut self, changes: Vec<Change>) {
        for c in changes {
            self.events.push_back(Event::Status {
                node: c.node,
                generation: c.generation,
                from: c.from,
                to: c.to,
            });
        }
    }

    /// Recomputes which nodes this node observes and sends heartbeats to.
    fn refresh_ring(&mut self, now: Timestamp) {
        let me = self.table.self_index();
        let wanted: Vec<(RingKey, NodeId, u64)> = if self.leave == Leave::Staying {
            self.table
                .subjects_of(me)
                .into_iter()
                .map(|i| {
                    let e = &self.table.entries()[i];
                    (e.key, e.record.node().clone(), e.body().generation)
                })
                .collect()
        } else {
            Vec::new()
        };
        let (added, removed) = self.monitor.set_subjects(wanted, now);
        for subject in added {
            self.events.push_back(Event::Observing {
                subject,
                started: true,
            });
        }
        if !removed.is_empty() {
            self.own_dirty = true;
        }
        for subject in removed {
            self.events.push_back(Event::Observing {
                subject,
                started: false,
            });
        }
        if self.leave != Leave::Staying {
            return;
        }
        let current: Vec<Peer> = self
            .table
            .targets_of(me)
            .into_iter()
            .map(|i| self.peer_at(i))
            .collect();
        let linger = now + self.cfg.interval * TARGET_LINGER;
        for t in &mut self.targets {
            let still = current.iter().any(|p| p.node == t.peer.node);
            if still {
                t.until = None;
            } else if t.until.is_none() {
                t.until = Some(linger);
            }
        }
        for p in current {
            match self.targets.iter_mut().find(|t| t.peer.node == p.node) {
                // The address may have changed with a new generation.
                Some(t) => t.peer = p,
                None => self.targets.push(Target {
                    peer: p,
                    until: None,
                }),
            }
        }
    }

    fn on_verdicts(&mut self, now: Timestamp, changes: Vec<VerdictChange>) {
        if changes.iter().any(|c| c.suspected) {
            self.start_reach_check(now);
        }
        for c in changes {
            self.events.push_back(Event::Verdict {
                subject: c.subject,
                generation: c.generation,
                suspected: c.suspected,
                phi: c.phi,
            });
        }
        self.own_dirty = true;
    }

    /// This node's probe.
    fn probe(&self, reply: bool) -> Probe {
        Probe {
            fingerprint: self.table.fingerprint(),
            members: u32::try_from(self.table.len()).unwrap_or(u32::MAX),
            reply,
        }
    }

    fn on_probe(&mut self, now: Timestamp, from: &NodeId, p: &Probe) {
        if p.reply {
            let to = self.peer_of(from);
            self.outbox.push_back(Transmit {
                to,
                frame: Frame::Probe(self.probe(false)),
            });
        }
        if let Some(check) = &mut self.reach {
            if check.asked.contains(from) {
                check.answered.insert(from.clone());
            }
        }
        self.on_fingerprint(now, from, p.fingerprint);
    }

    /// How long a reachability check waits for answers: a round trip on
    /// any network phimon runs on, with room.
    fn reach_wait(&self) -> Duration {
        self.cfg.interval.max(Duration::from_millis(500))
    }

    /// Starts a reachability check: probes, asking for an answer, the
    /// members that declare themselves alive (a random sample of them in a
    /// large fleet), whatever their status. This node is in contact with
    /// the fleet if, itself counted, more than half of those it asked
    /// answer. Called when this node starts suspecting a subject, and now
    /// and then while it is isolated.
    fn start_reach_check(&mut self, now: Timestamp) {
        if self.reach.is_some() {
            return;
        }
        let suspects: Vec<RingKey> = self
            .monitor
            .subjects
            .iter()
            .filter(|s| matches!(s.local, crate::monitor::Local::Suspected { .. }))
            .map(|s| s.key)
            .collect();
        let candidates: Vec<usize> = (0..self.table.len())
            .filter(|&i| {
                let e = &self.table.entries()[i];
                e.key != self.me.key && e.body().status == Declared::Alive
            })
            .collect();
        let mut asked = Vec::new();
        let mut pool = candidates;
        while asked.len() < REACH_PROBES && !pool.is_empty() {
            let i = pool.swap_remove(self.rng.random_range(0..pool.len()));
            asked.push(i);
        }
        if asked.len() < 2 {
            // Too few others to ask: a tiny fleet decides by its subjects
            // alone (more than half of them, at least two, suspected).
            let total = self.monitor.subjects.len();
            self.set_isolated(now, total >= 2 && suspects.len() * 2 > total);
            return;
        }
        let asked: Vec<NodeId> = asked
            .into_iter()
            .map(|i| self.table.entries()[i].record.node().clone())
            .collect();
        for node in &asked {
            let to = self.peer_of(node);
            self.outbox.push_back(Transmit {
                to,
                frame: Frame::Probe(self.probe(true)),
            });
        }
        self.reach = Some(ReachCheck {
            until: now + self.reach_wait(),
            asked,
            answered: HashSet::new(),
        });
    }

    /// Isolation: when this node starts suspecting peers it checks that it
    /// can still reach a majority of the fleet (or of a random sample of
    /// it). If not, this node, not its subjects, lost contact (it is cut
    /// off, or on the minority side of a split): it is isolated
    /// (it pages about itself only) until a later check is answered. The
    /// event names the version of this node's record its peers last
    /// confirmed (a fingerprint equal to its own): the version they hold
    /// of it, which names the fleet's incident about it.
    fn check_isolation(&mut self, now: Timestamp) {
        let Some(check) = self.reach.as_ref() else {
            if self.isolation.is_some() && self.reach_again.is_some_and(|t| t <= now) {
                self.reach_again = None;
                self.start_reach_check(now);
            }
            return;
        };
        // This node counts itself: a majority of the fleet, a strict one.
        let reached = (1 + check.answered.len()) * 2 > 1 + check.asked.len();
        if !reached && now < check.until {
            return;
        }
        self.reach = None;
        self.set_isolated(now, !reached);
    }

    /// Enters or leaves isolation, and schedules the next check while
    /// isolated.
    fn set_isolated(&mut self, now: Timestamp, isolated: bool) {
        match (self.isolation, isolated) {
            (None, true) => {
                let iso = Isolation {
                    generation: self.me.generation,
                    version: self.me.confirmed,
                };
                self.isolation = Some(iso);
                self.events.push_back(Event::Isolation {
                    isolated: true,
                    generation: iso.generation,
                    version: iso.version,
                });
            }
            (Some(iso), false) => {
                self.isolation = None;
                // Back in contact, this node still holds the verdicts of
                // its isolation, and its subjects' next heartbeats are a
                // moment away: as after a stall of its own, silences count
                // from now and nothing is paged until `hold` has passed,
                // or it would page about peers only it could not hear.
                self.monitor.observer_stalled(now);
                self.events.push_back(Event::Isolation {
                    isolated: false,
                    generation: iso.generation,
                    version: iso.version,
                });
            }
            _ => {}
        }
        if self.isolation.is_some() {
            self.reach_again = Some(now + self.cfg.interval * REACH_AGAIN);
        }
    }

    /// When the isolation check has work next.
    fn next_isolation_check(&self) -> Option<Timestamp> {
        match &self.reach {
            Some(c) => Some(c.until),
            None => self.reach_again,
        }
    }

    /// Starts a reachability check now, unless one is running: what a
    /// node about to page does, so that a node cut off with a few others
    /// (whose verdicts make a quorum among themselves) finds out first.
    pub fn check_reachability(&mut self, now: Timestamp) {
        self.start_reach_check(now);
    }

    /// Whether a reachability check is waiting for answers: this node
    /// does not know yet whether it is isolated, and should not page.
    pub fn checking_reachability(&self) -> bool {
        self.reach.is_some()
    }

    /// Signs and spreads a new version of this node's record if anything
    /// it states changed. Returns whether it did.
    fn publish_own(&mut self, now: Timestamp) -> bool {
        if !self.own_dirty {
            return false;
        }
        self.own_dirty = false;
        let verdicts = self.monitor.verdicts();
        let current = self.me.record.body();
        if !std::mem::take(&mut self.force_own)
            && current.generation == self.me.generation
            && current.status == self.me.status
            && current.kv == self.me.kv
            && *current.address == *self.me.address
            && current.verdicts == verdicts
        {
            return false;
        }
        // A new generation starts again at 1 (refute reset the version).
        let version = self.me.version + 1;
        let body = RecordBody {
            cluster: self.cfg.cluster.clone(),
            node: self.me.id.clone(),
            generation: self.me.generation,
            version,
            address: self.me.address.to_string(),
            status: self.me.status,
            kv: self.me.kv.clone(),
            verdicts: verdicts.clone(),
        };
        let record = match Record::sign(body, self.signer.as_mut()) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                *self.stats.records_rejected.entry(e.label()).or_default() += 1;
                return false;
            }
        };
        self.stats.own_records += 1;
        let previous = std::mem::replace(&mut self.me.record, record.clone());
        let lean = previous.body().generation == record.body().generation
            && previous.signed().credential == record.signed().credential;
        self.me.version = version;
        self.table.put(record.clone(), now);
        self.pushes.push(Push {
            record,
            from: None,
            lean,
        });
        true
    }

    /// A record of this node's own, signed with its key, claims a later
    /// version than the current one: a previous life of this node (its
    /// generation file was lost and the clock went back) or a copy running
    /// elsewhere. Move past it so this node's word is the newest again.
    /// At most once per ten intervals: only this node's key can make such
    /// records, so more would be a loop, not news.
    pub(crate) fn refute(&mut self, now: Timestamp, claimed: (u64, u64)) {
        if self
            .last_refutation
            .is_some_and(|t| t + self.cfg.interval * 10 > now)
        {
            self.stats.refutations_limited += 1;
            return;
        }
        self.last_refutation = Some(now);
        self.stats.refutations += 1;
        if claimed.0 > self.me.generation {
            let old = self.me.generation;
            self.me.generation = claimed.0.saturating_add(1);
            self.me.version = 0;
            self.seq = 0;
            self.events.push_back(Event::GenerationBumped {
                old,
                new: self.me.generation,
            });
        } else {
            self.me.version = self.me.version.max(claimed.1);
        }
        self.own_dirty = true;
        self.force_own = true;
    }

    pub(crate) fn own_key(&self) -> RingKey {
        self.me.key
    }

    pub(crate) fn own_version(&self) -> (u64, u64) {
        (self.me.generation, self.me.version)
    }
}
