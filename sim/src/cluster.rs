//! [`Cluster`]: N sans-IO nodes in one process on a virtual clock.

use phimon_detector::Timestamp;
use phimon_gossip::wire::{Channel, Frame};
use phimon_gossip::{
    Event, Gossip, NodeId, Record, SharedSecretAuthority, Signer, Snapshot, Status,
};
use phimon_node::{AlertEvent, Node, NodeConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Bytes an IPv4 + UDP + QUIC short header + AEAD tag add to each packet:
/// what the wire carries beyond a frame (reported beside frame bytes).
pub const PACKET_OVERHEAD: u64 = 20 + 8 + 12 + 16;

/// The network and the nodes' settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// Every node's settings (seeds are set by the cluster).
    pub node: NodeConfig,
    /// One-way latency, uniform between these.
    pub latency: (Duration, Duration),
    /// Probability that a datagram is lost; a message is then delayed by
    /// one retransmission (200 ms) instead.
    pub loss: f64,
    /// Seed of the network's and the nodes' random choices.
    pub seed: u64,
    /// Keep every protocol event and page in [`Cluster::log`].
    pub record: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node: NodeConfig::default(),
            latency: (Duration::from_micros(200), Duration::from_millis(1)),
            loss: 0.0,
            seed: 1,
            record: true,
        }
    }
}

/// Frames and bytes sent, by frame kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    /// (frames, bytes) per [`Frame::kind`].
    pub by_kind: BTreeMap<&'static str, (u64, u64)>,
    /// Datagrams sent.
    pub datagrams: u64,
    /// Messages sent.
    pub messages: u64,
    /// Bytes of record signatures and credentials inside the frames.
    pub signature_bytes: u64,
}

impl Traffic {
    /// Frame bytes of every kind.
    pub fn bytes(&self) -> u64 {
        self.by_kind.values().map(|v| v.1).sum()
    }

    /// Frames and bytes of one kind.
    pub fn of(&self, kind: &str) -> (u64, u64) {
        self.by_kind.get(kind).copied().unwrap_or((0, 0))
    }

    /// Messages (reliable frames) sent.
    pub fn reliable(&self) -> u64 {
        ["summary", "digest", "records"]
            .iter()
            .map(|k| self.of(k).0)
            .sum()
    }
}

/// Something a node did, as logged by [`Cluster::log`].
#[derive(Debug, Clone, PartialEq)]
pub enum Logged {
    /// A protocol event.
    Event(Event),
    /// A page.
    Alert(AlertEvent),
}

enum Kind {
    Timer(u32),
    Deliver { from: u32, to: u32, frame: Frame },
}

struct Ev {
    at: u64,
    seq: u64,
    kind: Kind,
}

impl PartialEq for Ev {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Ev {}
impl PartialOrd for Ev {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ev {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// The id of node `i`.
pub fn node_id(i: usize) -> NodeId {
    NodeId::new(format!("node-{i:05}"))
}

/// The address of node `i`.
pub fn address(i: usize) -> String {
    format!("10.{}.{}.{}:7800", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

fn parse_address(addr: &str) -> Option<u32> {
    let ip = addr.strip_suffix(":7800")?;
    let mut parts = ip.split('.').skip(1).map(|p| p.parse::<u32>().ok());
    let (a, b, c) = (parts.next()??, parts.next()??, parts.next()??);
    Some((a << 16) | (b << 8) | c)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Called for every event and page: (cluster, time in µs, node, what).
type Hook = Box<dyn FnMut(&Cluster, u64, u32, &Logged)>;

/// A fleet of [`Node`]s on one virtual clock: frames in flight with a
/// latency, datagram loss, per-link cuts, crashes, restarts and stalls.
/// The clock jumps to the next delivery or the earliest timer; nothing
/// sleeps, and the same seed replays the same run.
///
/// A scenario reads as a script: [`new`](Self::new) (nodes join through
/// node 0) or [`settled`](Self::settled) (every node already knows every
/// other), then [`crash`](Self::crash), [`start`](Self::start),
/// [`partition`](Self::partition), [`stall`](Self::stall),
/// [`run_for`](Self::run_for) / [`run_until`](Self::run_until), and
/// asserts on [`status`](Self::status), [`log`](Self::log) and
/// [`traffic`](Self::traffic).
pub struct Cluster {
    cfg: ClusterConfig,
    auth: SharedSecretAuthority,
    ids: Vec<NodeId>,
    index: HashMap<NodeId, u32>,
    nodes: Vec<Option<Node>>,
    generations: Vec<u64>,
    armed: Vec<Option<u64>>,
    /// A stalled node processes nothing until then.
    paused: Vec<Option<u64>>,
    heap: BinaryHeap<Reverse<Ev>>,
    seq: u64,
    now: u64,
    rng: StdRng,
    cut: BTreeSet<(u32, u32)>,
    traffic: Traffic,
    log: Vec<(Timestamp, usize, Logged)>,
    crashed_at: HashMap<u32, u64>,
    /// Every node's events and pages, as they happen, with the time.
    hook: Option<Hook>,
    rejected: u64,
    /// The last timer handled and how often in a row at that instant: a
    /// core that keeps asking to be woken at the same instant is a bug,
    /// not a long simulation.
    spin: (u32, u64, u32),
}

impl Cluster {
    fn empty(n: usize, cfg: ClusterConfig) -> Cluster {
        let ids: Vec<NodeId> = (0..n).map(node_id).collect();
        let index = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as u32))
            .collect();
        Cluster {
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            auth: SharedSecretAuthority::new(b"phimon simulated cluster"),
            ids,
            index,
            nodes: (0..n).map(|_| None).collect(),
            generations: vec![0; n],
            armed: vec![None; n],
            paused: vec![None; n],
            heap: BinaryHeap::new(),
            seq: 0,
            now: 1,
            cut: BTreeSet::new(),
            traffic: Traffic::default(),
            log: Vec::new(),
            crashed_at: HashMap::new(),
            hook: None,
            rejected: 0,
            spin: (0, 0, 0),
        }
    }

    /// `n` nodes that join at time zero: node 0 is every other node's
    /// seed.
    pub fn new(n: usize, cfg: ClusterConfig) -> Cluster {
        let mut c = Cluster::empty(n, cfg);
        for i in 0..n {
            c.start(i);
        }
        c
    }

    /// `n` nodes that already know each other: every node holds every
    /// record and every record carries its observers' alive verdicts, as
    /// in a fleet that has been running a while (detectors start from
    /// the prior). How a 10,000-node run skips 10,000 joins.
    pub fn settled(n: usize, cfg: ClusterConfig) -> Cluster {
        let mut c = Cluster::empty(n, cfg);
        let gcfg = c.cfg.node.gossip.clone();
        let mut signers: Vec<Box<dyn Signer>> = c
            .ids
            .iter()
            .map(|id| Box::new(c.auth.signer(id)) as Box<dyn Signer>)
            .collect();
        let t0 = Timestamp::from_micros(c.now);
        // Records without verdicts place everyone on the ring; then each
        // node's record states alive verdicts on its subjects.
        let plain: Vec<Arc<Record>> = (0..n)
            .map(|i| settled_record(&gcfg, i, Vec::new(), 1, signers[i].as_mut()))
            .collect();
        let ring = Snapshot::new(&plain, gcfg.observers, t0).map(|s| s.subjects());
        drop(plain);
        let mut subjects: Vec<Vec<NodeId>> = vec![Vec::new(); n];
        for (node, subs) in ring.unwrap_or_default() {
            if let Some(&i) = c.index.get(&node) {
                subjects[i as usize] = subs;
            }
        }
        let records: Vec<Arc<Record>> = (0..n)
            .map(|i| {
                let mut v: Vec<phimon_gossip::Verdict> = subjects[i]
                    .iter()
                    .map(|s| phimon_gossip::Verdict {
                        subject: s.clone(),
                        generation: 1,
                        suspected: false,
                        phi_centi: 0,
                    })
                    .collect();
                v.sort_by(|a, b| a.subject.cmp(&b.subject));
                settled_record(&gcfg, i, v, 2, signers[i].as_mut())
            })
            .collect();
        let Some(snapshot) = Snapshot::new(&records, gcfg.observers, t0) else {
            return c;
        };
        for (i, signer) in signers.into_iter().enumerate() {
            c.generations[i] = 1;
            let g = Gossip::from_snapshot(
                gcfg.clone(),
                &records[i],
                signer,
                Box::new(c.auth.clone()),
                c.cfg.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                t0,
                &snapshot,
            );
            c.nodes[i] = g
                .ok()
                .map(|g| Node::from_gossip(g, c.cfg.node.alert.clone(), t0));
        }
        drop(snapshot);
        for i in 0..n as u32 {
            c.drain(i);
        }
        c
    }

    /// Starts node `i`, in a new generation if it ran before.
    pub fn start(&mut self, i: usize) {
        self.generations[i] += 1;
        let mut cfg = self.cfg.node.clone();
        if i != 0 {
            cfg.gossip.seeds = vec![address(0)];
        }
        let now = Timestamp::from_micros(self.now);
        let seed = self
            .cfg
            .seed
            .wrapping_mul(31)
            .wrapping_add(i as u64 * 1000 + self.generations[i]);
        let node = Node::new(
            cfg,
            self.ids[i].clone(),
            address(i),
            self.generations[i],
            Box::new(self.auth.signer(&self.ids[i])),
            Box::new(self.auth.clone()),
            seed,
            now,
        );
        self.nodes[i] = node.ok();
        self.crashed_at.remove(&(i as u32));
        self.paused[i] = None;
        self.drain(i as u32);
    }

    /// kill -9: node `i` stops at once; frames to it are lost.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
        self.armed[i] = None;
        self.crashed_at.insert(i as u32, self.now);
    }

    /// SIGSTOP for `d`: node `i` processes nothing meanwhile; frames to it
    /// queue, as in its socket, and are handled when it resumes, after it
    /// noticed its own stall.
    pub fn stall(&mut self, i: usize, d: Duration) {
        self.paused[i] = Some(self.now + micros(d));
    }

    /// Cuts both directions between the two sets.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x as u32, y as u32));
                self.cut.insert((y as u32, x as u32));
            }
        }
    }

    /// Ends every cut.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Sets the datagram loss from now on.
    pub fn set_loss(&mut self, loss: f64) {
        self.cfg.loss = loss;
    }

    /// Calls `hook` for every event and page of every node as it happens,
    /// with the time (microseconds) and the node's index.
    pub fn on_log(&mut self, hook: impl FnMut(&Cluster, u64, u32, &Logged) + 'static) {
        self.hook = Some(Box::new(hook));
    }

    /// Nodes in the cluster (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never: a cluster has at least one node slot.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The virtual time.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.now)
    }

    /// Node `i`'s id.
    pub fn id(&self, i: usize) -> &NodeId {
        &self.ids[i]
    }

    /// The index of node `id`.
    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.index.get(id).map(|&i| i as usize)
    }

    /// Node `i`, if running.
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.nodes[i].as_ref()
    }

    /// Node `i`, if running, to act on it (set key/values, leave); call
    /// [`flush`](Self::flush) after.
    pub fn node_mut(&mut self, i: usize) -> Option<&mut Node> {
        self.nodes[i].as_mut()
    }

    /// Moves what node `i` produced into the network.
    pub fn flush(&mut self, i: usize) {
        self.drain(i as u32);
    }

    /// Whether node `i` is running.
    pub fn running(&self, i: usize) -> bool {
        self.nodes[i].is_some()
    }

    /// When node `i` crashed, if it is down.
    pub fn crashed_at(&self, i: u32) -> Option<u64> {
        self.crashed_at.get(&i).copied()
    }

    /// Running nodes.
    pub fn up(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.running(i)).collect()
    }

    /// Node `at`'s view of node `of`'s status.
    pub fn status(&self, at: usize, of: usize) -> Option<Status> {
        self.nodes[at]
            .as_ref()?
            .gossip()
            .member(&self.ids[of])
            .map(|m| m.status())
    }

    /// Every running node but `of` sees `of` as `status`.
    pub fn all_see(&self, of: usize, status: Status) -> bool {
        self.up()
            .into_iter()
            .filter(|&i| i != of)
            .all(|i| self.status(i, of) == Some(status))
    }

    /// Some running node sees `of` as `status`.
    pub fn any_sees(&self, of: usize, status: Status) -> bool {
        self.up()
            .into_iter()
            .any(|i| i != of && self.status(i, of) == Some(status))
    }

    /// Every running node holds the same table.
    pub fn converged(&self) -> bool {
        let fps: BTreeSet<u64> = self
            .nodes
            .iter()
            .flatten()
            .map(|n| n.gossip().fingerprint())
            .collect();
        fps.len() <= 1
    }

    /// Frames sent so far.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Forgets the traffic counted so far.
    pub fn reset_traffic(&mut self) {
        self.traffic = Traffic::default();
    }

    /// Frames some node refused (never expected).
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Every event and page so far (with [`ClusterConfig::record`]).
    pub fn log(&self) -> &[(Timestamp, usize, Logged)] {
        &self.log
    }

    /// The pages so far, with their time and node.
    pub fn alerts(&self) -> Vec<(Timestamp, usize, &AlertEvent)> {
        self.log
            .iter()
            .filter_map(|(t, i, l)| match l {
                Logged::Alert(a) => Some((*t, *i, a)),
                Logged::Event(_) => None,
            })
            .collect()
    }

    fn push(&mut self, at: u64, kind: Kind) {
        self.seq += 1;
        self.heap.push(Reverse(Ev {
            at,
            seq: self.seq,
            kind,
        }));
    }

    fn drain(&mut self, i: u32) {
        let now = self.now;
        let Some(node) = self.nodes[i as usize].as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = node.poll_transmit() {
            out.push(t);
        }
        let mut logged = Vec::new();
        while let Some(a) = node.poll_alert() {
            logged.push(Logged::Alert(a));
        }
        while let Some(e) = node.poll_event() {
            logged.push(Logged::Event(e));
        }
        let timeout = node.poll_timeout().map(|t| t.as_micros().max(now));
        for t in out {
            let len = t.frame.encoded_len() as u64;
            let k = self.traffic.by_kind.entry(t.frame.kind()).or_default();
            k.0 += 1;
            k.1 += len;
            if let Frame::Records(r) = &t.frame {
                self.traffic.signature_bytes += r
                    .records
                    .iter()
                    .map(|s| (s.signature.len() + s.credential.len()) as u64)
                    .sum::<u64>();
            }
            let channel = t.frame.channel();
            match channel {
                Channel::Datagram => self.traffic.datagrams += 1,
                Channel::Message => self.traffic.messages += 1,
            }
            let to = match &t.to.node {
                Some(n) => self.index.get(n).copied(),
                None => parse_address(&t.to.addr),
            };
            let Some(to) = to else { continue };
            if self.cut.contains(&(i, to)) {
                continue;
            }
            let (lo, hi) = (micros(self.cfg.latency.0), micros(self.cfg.latency.1));
            let mut delay = if hi > lo {
                self.rng.random_range(lo..=hi)
            } else {
                lo
            };
            if self.cfg.loss > 0.0 && self.rng.random_bool(self.cfg.loss.min(1.0)) {
                match channel {
                    Channel::Datagram => continue,
                    // A stream's lost packet is sent again after a timeout.
                    Channel::Message => delay += 200_000,
                }
            }
            self.push(
                now + delay,
                Kind::Deliver {
                    from: i,
                    to,
                    frame: t.frame,
                },
            );
        }
        if !logged.is_empty() {
            let mut hook = self.hook.take();
            for l in &logged {
                if let Some(h) = hook.as_mut() {
                    h(self, now, i, l);
                }
            }
            self.hook = hook;
            if self.cfg.record {
                let t = Timestamp::from_micros(now);
                self.log
                    .extend(logged.into_iter().map(|l| (t, i as usize, l)));
            }
        }
        if let Some(t) = timeout {
            if self.armed[i as usize] != Some(t) {
                self.armed[i as usize] = Some(t);
                self.push(t, Kind::Timer(i));
            }
        }
    }

    /// Wakes a node whose stall ended: it notices the stall first.
    fn resume_if_due(&mut self, i: u32) -> bool {
        match self.paused[i as usize] {
            Some(until) if until > self.now => false,
            Some(until) => {
                self.paused[i as usize] = None;
                if let Some(n) = self.nodes[i as usize].as_mut() {
                    n.observer_stalled(Timestamp::from_micros(until));
                }
                true
            }
            None => true,
        }
    }

    /// Runs the virtual clock up to `until` (microseconds).
    fn run_to(&mut self, until: u64) {
        while self.heap.peek().is_some_and(|e| e.0.at <= until) {
            let Some(Reverse(ev)) = self.heap.pop() else {
                break;
            };
            self.now = self.now.max(ev.at);
            let ts = Timestamp::from_micros(self.now);
            match ev.kind {
                Kind::Timer(i) => {
                    if self.armed[i as usize] != Some(ev.at) {
                        continue;
                    }
                    if let Some(until) = self.paused[i as usize].filter(|u| *u > self.now) {
                        // Stalled: the timer fires late, when it resumes.
                        self.push(until, Kind::Timer(i));
                        self.armed[i as usize] = Some(until);
                        continue;
                    }
                    self.armed[i as usize] = None;
                    if self.spin.0 == i && self.spin.1 == ev.at {
                        self.spin.2 += 1;
                        assert!(
                            self.spin.2 < 10_000,
                            "node {i} asks to be woken again and again at {}",
                            ev.at
                        );
                    } else {
                        self.spin = (i, ev.at, 0);
                    }
                    self.resume_if_due(i);
                    if let Some(n) = self.nodes[i as usize].as_mut() {
                        n.handle_timeout(ts);
                        self.drain(i);
                    }
                }
                Kind::Deliver { from, to, frame } => {
                    if let Some(until) = self.paused[to as usize].filter(|u| *u > self.now) {
                        self.push(until, Kind::Deliver { from, to, frame });
                        continue;
                    }
                    self.resume_if_due(to);
                    let from_id = self.ids[from as usize].clone();
                    if let Some(n) = self.nodes[to as usize].as_mut() {
                        if n.handle_frame(ts, &from_id, frame).is_err() {
                            self.rejected += 1;
                        }
                        self.drain(to);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Hands `frame` to node `to` at once, as if `from` had sent it (a
    /// hostile or hand-made frame); returns the node's verdict on it.
    pub fn inject(
        &mut self,
        from: &NodeId,
        to: usize,
        frame: Frame,
    ) -> Option<Result<(), phimon_gossip::GossipError>> {
        let now = Timestamp::from_micros(self.now);
        let r = self.nodes[to].as_mut()?.handle_frame(now, from, frame);
        self.drain(to as u32);
        Some(r)
    }

    /// The authority whose secret every node of this cluster shares:
    /// signs as any node (for forgeries in tests).
    pub fn authority(&self) -> &SharedSecretAuthority {
        &self.auth
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + micros(d);
        self.run_to(until);
    }

    /// Runs until `pred` holds (checked every 10 ms of virtual time) or
    /// `limit` passed; returns how long it took, if it held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&Cluster) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        let end = start + micros(limit);
        loop {
            if pred(self) {
                return Some(Duration::from_micros(self.now - start));
            }
            if self.now >= end {
                return None;
            }
            self.run_to((self.now + 10_000).min(end));
        }
    }
}

fn settled_record(
    cfg: &phimon_gossip::GossipConfig,
    i: usize,
    verdicts: Vec<phimon_gossip::Verdict>,
    version: u64,
    signer: &mut dyn Signer,
) -> Arc<Record> {
    let body = phimon_gossip::RecordBody {
        cluster: cfg.cluster.clone(),
        node: node_id(i),
        generation: 1,
        version,
        address: address(i),
        status: phimon_gossip::Declared::Alive,
        // Service-discovery data of a typical size (under 64 bytes).
        kv: vec![
            phimon_gossip::KeyValue("service".into(), format!("api-{}", i % 17)),
            phimon_gossip::KeyValue("zone".into(), format!("zone-{}", i % 3)),
        ],
        verdicts,
    };
    match Record::sign(body, signer) {
        Ok(r) => Arc::new(r),
        // The shared-secret signer cannot fail and these bodies are valid.
        Err(e) => panic!("simulated record: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_back_to_nodes() {
        for i in [0, 1, 255, 256, 9_999, 70_000] {
            assert_eq!(parse_address(&address(i)), Some(i as u32));
        }
        assert_eq!(parse_address("seed:7800"), None);
    }
}
