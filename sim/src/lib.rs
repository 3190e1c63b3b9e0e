//! A deterministic simulator of a phimon fleet: N real protocol cores
//! ([`phimon_gossip::Gossip`]) on one virtual clock, with datagram loss,
//! latency and crashes. `phimon simulate` prints its [`Report`].
//!
//! What it measures, per the direct-monitoring design: bytes per node per
//! round (heartbeats and gossip), detection time (crash until every live
//! node suspects the node), dissemination (the observers' quorum until
//! 99 % and 100 % of live nodes know), false suspicions (fleet statuses
//! and single observers' verdicts on live nodes), peak memory and wall
//! time.
//!
//! The fleet starts settled: every node holds every record and the
//! records carry their observers' alive verdicts ([`Snapshot`]), so a
//! 10,000-node run spends its time on the protocol, not on 10,000 joins.
//! Records are signed with [`SharedSecretAuthority`] (a hash, sized like
//! a real certificate chain and signature on the wire); real signature
//! costs are measured by the transport's benchmarks.
//!
//! Single-threaded and seeded: the same configuration gives the same
//! report, `wall_ms` and `peak_rss_bytes` aside. No IO but reading
//! `/proc/self/status` for the peak memory at the end.

use phimon_detector::{DetectorConfig, Timestamp};
use phimon_gossip::wire::{Channel, Frame};
use phimon_gossip::{
    Declared, Event, Gossip, GossipConfig, KeyValue, NodeId, Record, RecordBody,
    SharedSecretAuthority, Signer, Snapshot, Status, Verdict,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes an IPv4 + UDP + QUIC short header + AEAD tag add to each packet:
/// what the wire carries beyond a frame (reported beside the frame bytes).
pub const PACKET_OVERHEAD: u64 = 20 + 8 + 12 + 16;

/// Settings of one simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Nodes (at least 2).
    pub nodes: usize,
    /// Simulated time, in intervals ("rounds").
    pub rounds: u64,
    /// Probability that a datagram is lost; a message is then delayed by
    /// one retransmission instead.
    pub loss: f64,
    /// Push fanout.
    pub fanout: usize,
    /// Observers per node.
    pub observers: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Nodes crashed (kill -9) during the run, spread over its second
    /// half... after `first_crash`.
    pub crashes: usize,
    /// Round of the first crash: detectors have this much history.
    pub first_crash: u64,
    /// Heartbeat interval.
    pub interval: Duration,
    /// One-way latency, uniform between these.
    pub latency: (Duration, Duration),
    /// Detector settings.
    pub detector: DetectorConfig,
    /// Suspicion threshold.
    pub threshold: f64,
    /// Resolve threshold.
    pub resolve_threshold: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 1000,
            rounds: 300,
            loss: 0.01,
            fanout: 3,
            observers: phimon_gossip::DEFAULT_OBSERVERS,
            seed: 1,
            crashes: 5,
            first_crash: 60,
            interval: Duration::from_secs(1),
            latency: (Duration::from_micros(200), Duration::from_millis(1)),
            detector: DetectorConfig::default(),
            threshold: 8.0,
            resolve_threshold: 4.0,
        }
    }
}

/// What a simulation measured. Times are in rounds (intervals).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    /// Nodes simulated.
    pub nodes: usize,
    /// Rounds simulated.
    pub rounds: u64,
    /// Datagram loss.
    pub loss: f64,
    /// Push fanout.
    pub fanout: usize,
    /// Observers per node.
    pub observers: usize,
    /// Rounds from a dead node's observers' quorum until every live node
    /// knows it is suspected: median over crashes.
    pub propagation_rounds_p50: f64,
    /// Same, 99th percentile over crashes.
    pub propagation_rounds_p99: f64,
    /// Rounds from the quorum until 99 % of live nodes know: the worst
    /// crash.
    pub reach99_rounds_max: f64,
    /// log2(N) + 4: the target for `reach99_rounds_max`.
    pub reach99_rounds_target: f64,
    /// Frame bytes (heartbeats and gossip) sent per node per round.
    pub bytes_per_node_per_round: f64,
    /// Of which heartbeats.
    pub heartbeat_bytes_per_node_per_round: f64,
    /// Of which probes, summaries, digests and records.
    pub gossip_bytes_per_node_per_round: f64,
    /// Frame bytes plus [`PACKET_OVERHEAD`] per frame.
    pub wire_bytes_per_node_per_round: f64,
    /// Datagrams sent per node per round.
    pub datagrams_per_node_per_round: f64,
    /// Messages sent per node per round.
    pub messages_per_node_per_round: f64,
    /// Share of all frame bytes that are record signatures and
    /// credentials.
    pub signature_bytes_share: f64,
    /// Rounds from a crash until every live node suspects it: median.
    pub detection_rounds_p50: f64,
    /// Same, 99th percentile.
    pub detection_rounds_p99: f64,
    /// Rounds from a crash until each of its observers suspects it:
    /// median over observers and crashes.
    pub observer_detection_rounds_p50: f64,
    /// Nodes crashed.
    pub crashes: usize,
    /// Crashes some live node did not suspect by the end.
    pub undetected: usize,
    /// Fleet statuses `suspected` given to live nodes, at any node.
    pub false_suspicions: u64,
    /// Single observers' suspicions of live nodes (no quorum needed).
    pub false_local_suspicions: u64,
    /// Frames a core refused (never expected).
    pub frames_rejected: u64,
    /// Frames and bytes sent, by frame kind, whole run.
    pub frames_by_kind: std::collections::BTreeMap<&'static str, (u64, u64)>,
    /// Peak resident memory of the process, bytes (0 where unknown).
    pub peak_rss_bytes: u64,
    /// Wall-clock time of the run, milliseconds.
    pub wall_ms: u64,
}

enum Kind {
    Timer(u32),
    Deliver { from: u32, to: u32, frame: Frame },
    Crash(u32),
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

#[derive(Default)]
struct Counters {
    heartbeat_bytes: u64,
    gossip_bytes: u64,
    signature_bytes: u64,
    datagrams: u64,
    messages: u64,
    false_suspicions: u64,
    false_local: u64,
    rejected: u64,
    by_kind: std::collections::BTreeMap<&'static str, (u64, u64)>,
}

struct CrashInfo {
    node: u32,
    at: u64,
    /// When each node first saw it suspected.
    seen: HashMap<u32, u64>,
    /// When each observer first suspected it itself.
    verdicts: Vec<u64>,
}

struct World {
    cfg: SimConfig,
    nodes: Vec<Option<Gossip>>,
    index: HashMap<NodeId, u32>,
    ids: Vec<NodeId>,
    armed: Vec<Option<u64>>,
    heap: BinaryHeap<Reverse<Ev>>,
    seq: u64,
    rng: StdRng,
    counters: Counters,
    crashes: Vec<CrashInfo>,
    crashed: HashMap<u32, usize>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The id of simulated node `i`.
pub fn node_id(i: usize) -> NodeId {
    NodeId::new(format!("node-{i:05}"))
}

fn address(i: usize) -> String {
    format!("10.{}.{}.{}:7800", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

impl World {
    fn push(&mut self, at: u64, kind: Kind) {
        self.seq += 1;
        self.heap.push(Reverse(Ev {
            at,
            seq: self.seq,
            kind,
        }));
    }

    /// Moves node `i`'s output into the world and re-arms its timer.
    fn drain(&mut self, i: u32, now: u64) {
        let Some(g) = self.nodes[i as usize].as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = g.poll_transmit() {
            out.push(t);
        }
        let mut events = Vec::new();
        while let Some(e) = g.poll_event() {
            events.push(e);
        }
        let timeout = g.poll_timeout().map(|t| t.as_micros().max(now));
        for t in out {
            let len = t.frame.encoded_len() as u64;
            let k = self.counters.by_kind.entry(t.frame.kind()).or_default();
            k.0 += 1;
            k.1 += len;
            match &t.frame {
                Frame::Heartbeat(_) => self.counters.heartbeat_bytes += len,
                Frame::Records(r) => {
                    self.counters.gossip_bytes += len;
                    self.counters.signature_bytes += r
                        .records
                        .iter()
                        .map(|s| (s.signature.len() + s.credential.len()) as u64)
                        .sum::<u64>();
                }
                _ => self.counters.gossip_bytes += len,
            }
            let channel = t.frame.channel();
            match channel {
                Channel::Datagram => self.counters.datagrams += 1,
                Channel::Message => self.counters.messages += 1,
            }
            let to = match &t.to.node {
                Some(n) => self.index.get(n).copied(),
                None => parse_address(&t.to.addr),
            };
            let Some(to) = to else { continue };
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
        for e in events {
            self.observe(i, now, e);
        }
        if let Some(t) = timeout {
            if self.armed[i as usize] != Some(t) {
                self.armed[i as usize] = Some(t);
                self.push(t, Kind::Timer(i));
            }
        }
    }

    fn observe(&mut self, at_node: u32, now: u64, e: Event) {
        match e {
            Event::Status {
                node,
                to: Status::Suspected,
                ..
            } => {
                let Some(&v) = self.index.get(&node) else {
                    return;
                };
                match self.crashed.get(&v) {
                    Some(&c) => {
                        self.crashes[c].seen.entry(at_node).or_insert(now);
                    }
                    None => self.counters.false_suspicions += 1,
                }
            }
            Event::Verdict {
                subject,
                suspected: true,
                ..
            } => {
                let Some(&v) = self.index.get(&subject) else {
                    return;
                };
                match self.crashed.get(&v) {
                    Some(&c) => self.crashes[c].verdicts.push(now),
                    None => self.counters.false_local += 1,
                }
            }
            _ => {}
        }
    }

    fn run(&mut self, end: u64) {
        while let Some(Reverse(ev)) = self.heap.pop() {
            if ev.at > end {
                break;
            }
            let now = ev.at;
            let ts = Timestamp::from_micros(now);
            match ev.kind {
                Kind::Timer(i) => {
                    if self.armed[i as usize] != Some(now) {
                        continue;
                    }
                    self.armed[i as usize] = None;
                    if let Some(g) = self.nodes[i as usize].as_mut() {
                        g.handle_timeout(ts);
                        self.drain(i, now);
                    }
                }
                Kind::Deliver { from, to, frame } => {
                    let from_id = self.ids[from as usize].clone();
                    if let Some(g) = self.nodes[to as usize].as_mut() {
                        if g.handle_frame(ts, &from_id, frame).is_err() {
                            self.counters.rejected += 1;
                        }
                        self.drain(to, now);
                    }
                }
                Kind::Crash(v) => {
                    self.nodes[v as usize] = None;
                    self.crashed.insert(v, self.crashes.len());
                    self.crashes.push(CrashInfo {
                        node: v,
                        at: now,
                        seen: HashMap::new(),
                        verdicts: Vec::new(),
                    });
                }
            }
        }
    }
}

fn parse_address(addr: &str) -> Option<u32> {
    let ip = addr.strip_suffix(":7800")?;
    let mut parts = ip.split('.').skip(1).map(|p| p.parse::<u32>().ok());
    let (a, b, c) = (parts.next()??, parts.next()??, parts.next()??);
    Some((a << 16) | (b << 8) | c)
}

/// A quantile (nearest rank) of `v`, sorted in place; 0 for none.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Peak resident memory of this process (Linux), bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn body(cfg: &GossipConfig, i: usize, verdicts: Vec<Verdict>, version: u64) -> RecordBody {
    RecordBody {
        cluster: cfg.cluster.clone(),
        node: node_id(i),
        generation: 1,
        version,
        address: address(i),
        status: Declared::Alive,
        // Service-discovery data of a typical size (≤ 64 bytes).
        kv: vec![
            KeyValue("service".into(), format!("api-{}", i % 17)),
            KeyValue("zone".into(), format!("zone-{}", i % 3)),
        ],
        verdicts,
    }
}

/// Runs one simulation.
pub fn run(cfg: &SimConfig) -> Report {
    let started = Instant::now();
    let n = cfg.nodes.max(2);
    let gcfg = GossipConfig {
        cluster: "sim".into(),
        interval: cfg.interval,
        fanout: cfg.fanout,
        observers: cfg.observers,
        detector: cfg.detector.clone(),
        threshold: cfg.threshold,
        resolve_threshold: cfg.resolve_threshold,
        heartbeat_events: false,
        ..GossipConfig::default()
    };
    let auth = SharedSecretAuthority::new(b"phimon simulator");
    let ids: Vec<NodeId> = (0..n).map(node_id).collect();
    let mut signers: Vec<Box<dyn Signer>> = ids
        .iter()
        .map(|id| Box::new(auth.signer(id)) as Box<dyn Signer>)
        .collect();
    let t0 = Timestamp::from_micros(1);
    // Records without verdicts place everyone on the ring; then every
    // node's record states its alive verdicts on its subjects, as in a
    // fleet that has been running for a while.
    let plain: Vec<Arc<Record>> = (0..n)
        .map(|i| sign(body(&gcfg, i, Vec::new(), 1), signers[i].as_mut()))
        .collect();
    let ring = Snapshot::new(&plain, gcfg.observers, t0).map(|s| s.subjects());
    let index: HashMap<NodeId, u32> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), i as u32))
        .collect();
    let mut subjects: Vec<Vec<NodeId>> = vec![Vec::new(); n];
    for (node, subs) in ring.unwrap_or_default() {
        if let Some(&i) = index.get(&node) {
            subjects[i as usize] = subs;
        }
    }
    let records: Vec<Arc<Record>> = (0..n)
        .map(|i| {
            let mut v: Vec<Verdict> = subjects[i]
                .iter()
                .map(|s| Verdict {
                    subject: s.clone(),
                    generation: 1,
                    suspected: false,
                })
                .collect();
            v.sort_by(|a, b| a.subject.cmp(&b.subject));
            sign(body(&gcfg, i, v, 2), signers[i].as_mut())
        })
        .collect();
    drop(plain);
    let Some(snapshot) = Snapshot::new(&records, gcfg.observers, t0) else {
        unreachable_report(cfg)
    };
    let mut nodes = Vec::with_capacity(n);
    for (i, signer) in signers.into_iter().enumerate() {
        let g = Gossip::from_snapshot(
            gcfg.clone(),
            &records[i],
            signer,
            Box::new(auth.clone()),
            cfg.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
            t0,
            &snapshot,
        );
        nodes.push(g.ok());
    }
    drop(snapshot);
    drop(records);
    let mut world = World {
        cfg: cfg.clone(),
        nodes,
        index,
        ids,
        armed: vec![None; n],
        heap: BinaryHeap::new(),
        seq: 0,
        rng: StdRng::seed_from_u64(cfg.seed),
        counters: Counters::default(),
        crashes: Vec::new(),
        crashed: HashMap::new(),
    };
    for i in 0..n as u32 {
        world.drain(i, t0.as_micros());
    }
    // Crashes spread between `first_crash` and 30 rounds before the end,
    // so each has time to be detected everywhere.
    let interval = micros(cfg.interval);
    let end = cfg.rounds * interval;
    let from = cfg.first_crash.min(cfg.rounds) * interval;
    let to = end.saturating_sub(30 * interval).max(from);
    let mut victims: Vec<u32> = Vec::new();
    while victims.len() < cfg.crashes.min(n / 2) {
        let v = world.rng.random_range(0..n as u32);
        if !victims.contains(&v) {
            victims.push(v);
        }
    }
    for (k, v) in victims.iter().enumerate() {
        let at = if victims.len() > 1 {
            from + (to - from) * k as u64 / (victims.len() as u64 - 1)
        } else {
            from
        } + world.rng.random_range(0..interval);
        world.push(at, Kind::Crash(*v));
    }
    world.run(end);
    report(cfg, &world, n, started)
}

fn sign(body: RecordBody, signer: &mut dyn Signer) -> Arc<Record> {
    match Record::sign(body, signer) {
        Ok(r) => Arc::new(r),
        // The shared-secret signer cannot fail and the bodies are valid.
        Err(e) => panic!("simulator record: {e}"),
    }
}

fn unreachable_report(cfg: &SimConfig) -> ! {
    panic!("no records for {} nodes", cfg.nodes)
}

fn report(cfg: &SimConfig, w: &World, n: usize, started: Instant) -> Report {
    let interval = micros(cfg.interval) as f64;
    let rounds = cfg.rounds.max(1) as f64;
    let per = |x: u64| x as f64 / (n as f64 * rounds);
    let c = &w.counters;
    let total = c.heartbeat_bytes + c.gossip_bytes;
    let frames = c.datagrams + c.messages;
    let live: Vec<u32> = (0..n as u32)
        .filter(|i| w.nodes[*i as usize].is_some())
        .collect();
    let (mut detection, mut propagation, mut obs) = (Vec::new(), Vec::new(), Vec::new());
    let mut reach99: f64 = 0.0;
    let mut undetected = 0;
    for crash in &w.crashes {
        let _ = crash.node;
        let mut seen: Vec<u64> = live
            .iter()
            .filter_map(|i| crash.seen.get(i).copied())
            .collect();
        if seen.len() < live.len() {
            undetected += 1;
            continue;
        }
        seen.sort_unstable();
        let quorum = crash.seen.values().copied().min().unwrap_or(crash.at);
        let last = seen.last().copied().unwrap_or(quorum);
        detection.push((last - crash.at) as f64 / interval);
        propagation.push((last - quorum) as f64 / interval);
        let k99 = ((seen.len() as f64 * 0.99).ceil() as usize).clamp(1, seen.len());
        reach99 = reach99.max((seen[k99 - 1] - quorum) as f64 / interval);
        obs.extend(
            crash
                .verdicts
                .iter()
                .map(|t| (t - crash.at) as f64 / interval),
        );
    }
    Report {
        nodes: n,
        rounds: cfg.rounds,
        loss: cfg.loss,
        fanout: cfg.fanout,
        observers: cfg.observers,
        propagation_rounds_p50: quantile(&mut propagation.clone(), 0.5),
        propagation_rounds_p99: quantile(&mut propagation, 0.99),
        reach99_rounds_max: reach99,
        reach99_rounds_target: (n as f64).log2() + 4.0,
        bytes_per_node_per_round: per(total),
        heartbeat_bytes_per_node_per_round: per(c.heartbeat_bytes),
        gossip_bytes_per_node_per_round: per(c.gossip_bytes),
        wire_bytes_per_node_per_round: per(total + frames * PACKET_OVERHEAD),
        datagrams_per_node_per_round: per(c.datagrams),
        messages_per_node_per_round: per(c.messages),
        signature_bytes_share: if total == 0 {
            0.0
        } else {
            c.signature_bytes as f64 / total as f64
        },
        detection_rounds_p50: quantile(&mut detection.clone(), 0.5),
        detection_rounds_p99: quantile(&mut detection, 0.99),
        observer_detection_rounds_p50: quantile(&mut obs, 0.5),
        crashes: w.crashes.len(),
        undetected,
        false_suspicions: c.false_suspicions,
        false_local_suspicions: c.false_local,
        frames_rejected: c.rejected,
        frames_by_kind: c.by_kind.clone(),
        peak_rss_bytes: peak_rss(),
        wall_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
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

    #[test]
    fn a_small_fleet_detects_its_crashes_without_false_suspicions() {
        let cfg = SimConfig {
            nodes: 50,
            rounds: 150,
            crashes: 3,
            first_crash: 40,
            ..SimConfig::default()
        };
        let r = run(&cfg);
        assert_eq!(r.crashes, 3, "{r:?}");
        assert_eq!(r.undetected, 0, "{r:?}");
        assert_eq!(r.false_suspicions, 0, "{r:?}");
        assert_eq!(r.frames_rejected, 0, "{r:?}");
        assert!(
            r.detection_rounds_p99 > 1.0 && r.detection_rounds_p99 < 30.0,
            "{r:?}"
        );
        assert!(r.reach99_rounds_max <= r.reach99_rounds_target, "{r:?}");
        // Settled, a node sends about k heartbeats and one probe a round.
        assert!(r.datagrams_per_node_per_round < 5.0, "{r:?}");
        // Same seed, same report.
        let again = run(&cfg);
        assert_eq!(
            Report {
                wall_ms: 0,
                peak_rss_bytes: 0,
                ..again
            },
            Report {
                wall_ms: 0,
                peak_rss_bytes: 0,
                ..r
            }
        );
    }
}
