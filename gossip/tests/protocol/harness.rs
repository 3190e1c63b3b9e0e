//! N cores in one process on a simulated clock: frames in flight with a
//! latency, per-link cuts, datagram loss, crashes and restarts. The clock
//! jumps to the next delivery or the earliest `poll_timeout`; nothing
//! sleeps.

use phimon_gossip::wire::{Channel, Frame};
use phimon_gossip::{
    Event, Gossip, GossipConfig, NodeId, Peer, SharedSecretAuthority, Status, Timestamp,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::time::Duration;

pub struct Flight {
    at: Timestamp,
    seq: u64,
    from: usize,
    to: usize,
    frame: Frame,
}

impl PartialEq for Flight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Flight {}
impl PartialOrd for Flight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Flight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Traffic counted per frame kind: (frames, bytes).
#[derive(Debug, Default, Clone)]
pub struct Traffic {
    pub by_kind: HashMap<&'static str, (u64, u64)>,
}

impl Traffic {
    pub fn messages(&self) -> u64 {
        ["summary", "digest", "records"]
            .iter()
            .map(|k| self.by_kind.get(k).map_or(0, |v| v.0))
            .sum()
    }
    pub fn bytes(&self) -> u64 {
        self.by_kind.values().map(|v| v.1).sum()
    }
}

pub struct Harness {
    pub cfg: GossipConfig,
    pub auth: SharedSecretAuthority,
    pub ids: Vec<NodeId>,
    pub nodes: Vec<Option<Gossip>>,
    pub generations: Vec<u64>,
    pub events: Vec<Vec<Event>>,
    pub now: Timestamp,
    flights: BinaryHeap<Reverse<Flight>>,
    seq: u64,
    pub cut: BTreeSet<(usize, usize)>,
    pub latency: Duration,
    pub loss: f64,
    rng: StdRng,
    pub traffic: Traffic,
}

pub fn addr(i: usize) -> String {
    format!("n{i}:7800")
}

impl Harness {
    /// `n` nodes; node 0 is the seed of the others, which start over the
    /// first second.
    pub fn new(n: usize, cfg: GossipConfig) -> Harness {
        let mut h = Harness {
            cfg,
            auth: SharedSecretAuthority::new(b"cluster secret"),
            ids: (0..n).map(|i| NodeId::new(format!("n{i}"))).collect(),
            nodes: (0..n).map(|_| None).collect(),
            generations: vec![0; n],
            events: vec![Vec::new(); n],
            now: Timestamp::from_micros(1),
            flights: BinaryHeap::new(),
            seq: 0,
            cut: BTreeSet::new(),
            latency: Duration::from_millis(1),
            loss: 0.0,
            rng: StdRng::seed_from_u64(7),
            traffic: Traffic::default(),
        };
        for i in 0..n {
            h.start(i);
        }
        h
    }

    /// Starts (or restarts, in a new generation) node `i`.
    pub fn start(&mut self, i: usize) {
        self.generations[i] += 1;
        let mut cfg = self.cfg.clone();
        if i != 0 {
            cfg.seeds = vec![addr(0)];
        }
        let g = Gossip::new(
            cfg,
            self.ids[i].clone(),
            addr(i),
            self.generations[i],
            Box::new(self.auth.signer(&self.ids[i])),
            Box::new(self.auth.clone()),
            i as u64 * 1000 + self.generations[i],
            self.now,
        )
        .expect("core starts");
        self.nodes[i] = Some(g);
        self.drain(i);
    }

    /// kill -9: the node stops, frames to it are lost.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    pub fn node(&self, i: usize) -> &Gossip {
        self.nodes[i].as_ref().expect("node is running")
    }

    pub fn node_mut(&mut self, i: usize) -> &mut Gossip {
        self.nodes[i].as_mut().expect("node is running")
    }

    /// Cuts both directions between the two sets.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    fn index_of(&self, peer: &Peer) -> Option<usize> {
        if let Some(n) = &peer.node {
            return self.ids.iter().position(|id| id == n);
        }
        (0..self.ids.len()).find(|&i| *peer.addr == addr(i))
    }

    /// Moves node `i`'s transmits into flight and its events into `events`.
    pub fn drain(&mut self, i: usize) {
        let Some(g) = self.nodes[i].as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = g.poll_transmit() {
            out.push(t);
        }
        while let Some(e) = g.poll_event() {
            self.events[i].push(e);
        }
        for t in out {
            let kind = t.frame.kind();
            let len = t.frame.encoded_len() as u64;
            let c = self.traffic.by_kind.entry(kind).or_default();
            c.0 += 1;
            c.1 += len;
            let Some(to) = self.index_of(&t.to) else {
                continue;
            };
            if self.cut.contains(&(i, to)) {
                continue;
            }
            if t.frame.channel() == Channel::Datagram
                && self.loss > 0.0
                && self.rng.random_bool(self.loss)
            {
                continue;
            }
            // Frames of both channels round-trip through the codec, so the
            // cores only ever see what the wire can carry.
            let bytes = t.frame.encode();
            let frame =
                Frame::decode(&bytes, t.frame.channel(), 1 << 20).expect("own frames decode");
            self.seq += 1;
            self.flights.push(Reverse(Flight {
                at: self.now + self.latency,
                seq: self.seq,
                from: i,
                to,
                frame,
            }));
        }
    }

    /// The next instant something happens.
    fn next(&self) -> Option<Timestamp> {
        let f = self.flights.peek().map(|f| f.0.at);
        let t = self
            .nodes
            .iter()
            .flatten()
            .filter_map(|g| g.poll_timeout())
            .min();
        match (f, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs until `until` (simulated).
    pub fn run_until(&mut self, until: Timestamp) {
        while let Some(t) = self.next() {
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            while self.flights.peek().is_some_and(|f| f.0.at <= self.now) {
                let Some(Reverse(f)) = self.flights.pop() else {
                    break;
                };
                let from = self.ids[f.from].clone();
                if let Some(g) = self.nodes[f.to].as_mut() {
                    g.handle_frame(self.now, &from, f.frame)
                        .expect("valid frame");
                    self.drain(f.to);
                }
            }
            for i in 0..self.nodes.len() {
                let due = self.nodes[i]
                    .as_ref()
                    .and_then(|g| g.poll_timeout())
                    .is_some_and(|t| t <= self.now);
                if due {
                    let now = self.now;
                    self.node_mut(i).handle_timeout(now);
                    self.drain(i);
                }
            }
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Runs until `pred` holds, checking every 10 ms, for at most `limit`.
    pub fn run_until_true(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&Harness) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now < start + limit {
            if pred(self) {
                return Some(self.now - start);
            }
            self.run_for(Duration::from_millis(10));
        }
        pred(self).then(|| self.now - start)
    }

    /// Node `at`'s view of node `of`'s status.
    pub fn status(&self, at: usize, of: usize) -> Option<Status> {
        self.nodes[at]
            .as_ref()?
            .member(&self.ids[of])
            .map(|m| m.status())
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    /// Every running node sees `of` as `status`.
    pub fn all_see(&self, of: usize, status: Status) -> bool {
        self.running()
            .into_iter()
            .filter(|&i| i != of)
            .all(|i| self.status(i, of) == Some(status))
    }

    /// Every running node holds the same table.
    pub fn settled(&self) -> bool {
        let fps: BTreeSet<u64> = self
            .nodes
            .iter()
            .flatten()
            .map(|g| g.fingerprint())
            .collect();
        fps.len() == 1
    }

    /// Events of node `i` since the last call.
    pub fn take_events(&mut self, i: usize) -> Vec<Event> {
        std::mem::take(&mut self.events[i])
    }

    pub fn reset_traffic(&mut self) {
        self.traffic = Traffic::default();
    }
}
