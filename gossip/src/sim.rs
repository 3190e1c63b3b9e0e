//! Deterministic cluster simulator: many [`Gossip`] cores in one process
//! on a virtual clock.
//!
//! [`Sim`] owns the cores, the messages in flight (each with its own
//! latency, some lost), per-link cut switches and partitions, crashes,
//! restarts and graceful leaves. Time jumps to the earliest pending
//! delivery or [`Gossip::poll_timeout`]; nothing sleeps, and one seed
//! replays one run exactly. Messages travel typed by default (their exact
//! encoded size is counted, see [`Message::wire_size`]); with
//! [`SimConfig::encode`] every message goes through the real encoder and
//! decoder instead.
//!
//! [`run_experiment`] drives a whole measurement (dissemination, cost,
//! detection, false suspicions) for `phimon simulate`. Detection can be
//! measured at a sample of observer nodes ([`SimConfig::observers`]): the
//! others gossip in full without detectors
//! ([`GossipConfig::local_detection`] off), because a detector per node
//! pair is most of a large run's time and memory.

use crate::wire::{self, Message};
use crate::{Event, Gossip, GossipConfig, GossipError, MemberStatus, NodeId};
use phimon_detector::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Settings of a simulated cluster.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Settings of every core (`seeds` is filled in by the simulator).
    pub gossip: GossipConfig,
    /// Probability that a message is lost (0..1).
    pub loss: f64,
    /// One-way latency: uniform between these bounds.
    pub latency_min: Duration,
    /// Upper bound of the one-way latency.
    pub latency_max: Duration,
    /// Seed of the network's and the cores' randomness.
    pub seed: u64,
    /// The first this many nodes are the seeds every node starts with.
    pub seed_nodes: usize,
    /// Pass every message through `encode`/`decode` (slower; for tests).
    pub encode: bool,
    /// The nodes (by index) that judge their peers; the others run with
    /// [`GossipConfig::local_detection`] off: they gossip in full but never
    /// judge anyone dead. `None` (the default): every node judges.
    pub observers: Option<Vec<usize>>,
    /// Threads that run the cores: 1 (the default) or 2. Two give exactly
    /// the results of one: events less than the minimum latency apart
    /// (and less than an interval) cannot cause each other, so those of
    /// different nodes run side by side, and their messages, events and
    /// random draws are applied in the one-thread order. With
    /// [`Sim::on_round`] installed, or a zero minimum latency, one thread
    /// runs.
    pub threads: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            gossip: GossipConfig::default(),
            loss: 0.0,
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(10),
            seed: 1,
            seed_nodes: 3,
            encode: false,
            observers: None,
            threads: 1,
        }
    }
}

/// An event of one simulated node.
#[derive(Debug, Clone, PartialEq)]
pub struct SimEvent {
    /// Virtual time.
    pub at: Timestamp,
    /// Index of the node that reported it.
    pub observer: usize,
    /// The event.
    pub event: Event,
}

/// Network counters of a simulation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Their encoded bytes.
    pub bytes: u64,
    /// Messages lost at random.
    pub lost: u64,
    /// Messages dropped by a cut link or a partition.
    pub cut: u64,
    /// Messages for a crashed or unknown node.
    pub undeliverable: u64,
    /// Messages a core rejected (see [`GossipError`]).
    pub rejected: u64,
}

#[derive(Debug)]
enum Payload {
    Typed(Box<Message>),
    Bytes(Vec<u8>),
}

#[derive(Debug)]
struct Flight {
    at: Timestamp,
    seq: u64,
    from: usize,
    to: usize,
    payload: Payload,
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

/// A function called after every round a node runs.
type RoundHook = Box<dyn FnMut(usize, &Gossip, Timestamp)>;

/// One simulated node.
#[derive(Debug)]
struct SimNode {
    id: NodeId,
    address: Arc<str>,
    generation: u64,
    /// `None` while crashed.
    core: Option<Gossip>,
    /// Timer currently armed in the heap.
    armed: Option<Timestamp>,
}

/// A simulated cluster. See the [module docs](self).
pub struct Sim {
    config: SimConfig,
    now: Timestamp,
    rng: StdRng,
    nodes: Vec<SimNode>,
    by_id: HashMap<NodeId, usize>,
    by_addr: HashMap<Arc<str>, usize>,
    flights: BinaryHeap<Reverse<Flight>>,
    timers: BinaryHeap<Reverse<(Timestamp, usize)>>,
    seq: u64,
    cuts: HashSet<(usize, usize)>,
    groups: Option<Vec<u32>>,
    events: Vec<SimEvent>,
    record_events: bool,
    net: NetStats,
    /// Largest message sent.
    max_size: usize,
    /// Called after every round a node runs, with its index and `now`.
    round_hook: Option<RoundHook>,
    /// Nodes whose rounds are logged, and the log: (node, its own
    /// heartbeat after the round, time).
    logged: Vec<bool>,
    round_log: Vec<(usize, u64, Timestamp)>,
}

/// One event to run on one node's core.
#[derive(Debug)]
enum Job {
    /// A message arrives from `from`.
    Deliver { from: NodeId, payload: Payload },
    /// The node's timer fires; `log`: record its round in the round log.
    Timer { log: bool },
}

/// What one event did at a node, applied to the network in event order.
#[derive(Debug, Default)]
struct Outcome {
    /// The node is down: nothing ran.
    down: bool,
    /// The core rejected the message.
    rejected: bool,
    /// Messages to send, in the order the core queued them.
    sends: Vec<(Option<NodeId>, Arc<str>, Payload, usize)>,
    /// Events, if recorded.
    events: Vec<Event>,
    /// The core's timeout afterwards.
    timeout: Option<Timestamp>,
    /// A logged round: the node's own heartbeat after it.
    round: Option<u64>,
}

/// Runs one event on a core: everything that touches only that core, so
/// it can run on any thread. `hook` is called after a round (one thread
/// only).
fn execute(
    core: Option<&mut Gossip>,
    i: usize,
    at: Timestamp,
    job: Job,
    encode: bool,
    record: bool,
    hook: Option<&mut RoundHook>,
) -> Outcome {
    let Some(core) = core else {
        return Outcome {
            down: true,
            ..Outcome::default()
        };
    };
    let mut out = Outcome::default();
    match job {
        Job::Deliver { from, payload } => {
            let r: Result<(), GossipError> = match payload {
                Payload::Typed(m) => core.handle_message_typed(at, &from, *m),
                Payload::Bytes(b) => core.handle_message(at, &from, &b),
            };
            out.rejected = r.is_err();
        }
        Job::Timer { log } => {
            let before = core.rounds();
            core.handle_timeout(at);
            if core.rounds() != before {
                if let Some(hook) = hook {
                    hook(i, core, at);
                }
                if log {
                    out.round = core.member(core.self_id()).map(|m| m.heartbeat());
                }
            }
        }
    }
    loop {
        let next = if encode {
            core.poll_transmit().map(|t| {
                let n = t.payload.len();
                (
                    t.to_node,
                    Arc::from(t.to_addr),
                    Payload::Bytes(t.payload),
                    n,
                )
            })
        } else {
            core.poll_transmit_typed().map(|t| {
                (
                    t.to_node,
                    t.to_addr,
                    Payload::Typed(Box::new(t.message)),
                    t.size,
                )
            })
        };
        match next {
            Some(send) => out.sends.push(send),
            None => break,
        }
    }
    while let Some(event) = core.poll_event() {
        if record {
            out.events.push(event);
        }
    }
    out.timeout = core.poll_timeout();
    out
}

/// A node's events of one window: (position in the window, time, event).
type Jobs = Vec<(usize, Timestamp, Job)>;
/// A node's events of one window, with its core.
type Group = (usize, Option<Gossip>, Jobs);
/// What came of them, with the core.
type Done = (usize, Option<Gossip>, Vec<(usize, Outcome)>);

/// Runs a node's events of one window in order.
fn run_group((i, mut core, jobs): Group, encode: bool, record: bool) -> Done {
    let outs = jobs
        .into_iter()
        .map(|(k, at, job)| (k, execute(core.as_mut(), i, at, job, encode, record, None)))
        .collect();
    (i, core, outs)
}

/// Estimated work of a job, in about nanoseconds of this machine's
/// release build, for sharing a window between the threads: it decides
/// only who runs what, never the outcome. Measured per kind of job on a
/// settled 1,000-node cluster: a round costs ~13 ns per member, ~55 with
/// detectors to judge; a positional SYN ~11 ns per slot; news applied
/// ~20 ns per entry, ~10 times that where each entry is a detector's
/// heartbeat (an observer's cache misses).
fn job_cost(core: Option<&Gossip>, job: &Job) -> usize {
    let Some(core) = core else {
        return 1;
    };
    let detectors = core.config().local_detection;
    match job {
        Job::Timer { .. } => core.len() * if detectors { 55 } else { 13 },
        Job::Deliver { payload, .. } => {
            let (states, news) = match payload {
                Payload::Typed(m) => {
                    let p = &m.digest.positions;
                    (
                        p.states.len() + m.digest.entries.len(),
                        m.delta.len() + p.request.len() + p.beats.len(),
                    )
                }
                // Encoded: about 12 bytes per entry, of either kind.
                Payload::Bytes(b) => (b.len() / 24, b.len() / 24),
            };
            states * 11 + news * if detectors { 200 } else { 20 } + 1
        }
    }
}

/// The groups of one window, claimed one at a time by whichever thread
/// is free (heaviest first), and their results.
struct Window {
    groups: Vec<std::sync::Mutex<Option<Group>>>,
    results: Vec<std::sync::Mutex<Option<Done>>>,
    next: std::sync::atomic::AtomicUsize,
    finished: std::sync::atomic::AtomicUsize,
}

impl Window {
    fn new(groups: Vec<Group>) -> Self {
        let len = groups.len();
        Window {
            groups: groups
                .into_iter()
                .map(|g| std::sync::Mutex::new(Some(g)))
                .collect(),
            results: (0..len).map(|_| std::sync::Mutex::new(None)).collect(),
            next: std::sync::atomic::AtomicUsize::new(0),
            finished: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Claims and runs groups until none is left.
    fn work(&self, encode: bool, record: bool) {
        use std::sync::atomic::Ordering;
        loop {
            let g = self.next.fetch_add(1, Ordering::AcqRel);
            if g >= self.groups.len() {
                return;
            }
            // A poisoned lock means the other thread panicked: the scope
            // re-raises that panic; here the group is simply skipped.
            let group = self.groups[g].lock().ok().and_then(|mut s| s.take());
            if let Some(group) = group {
                let done = run_group(group, encode, record);
                if let Ok(mut slot) = self.results[g].lock() {
                    *slot = Some(done);
                }
            }
            self.finished.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// True once every group ran.
    fn finished(&self) -> bool {
        self.finished.load(std::sync::atomic::Ordering::Acquire) >= self.groups.len()
    }

    /// The results, in claim order.
    fn take_results(&self) -> Vec<Done> {
        self.results
            .iter()
            .filter_map(|r| r.lock().ok().and_then(|mut s| s.take()))
            .collect()
    }
}

/// Receives, spinning a little first: a window of events takes tens of
/// microseconds, less than waking a parked thread. After a short spin it
/// yields between tries, so on a machine busier than its cores the other
/// thread (which prepares the window) gets the core instead.
fn recv_soon<T>(rx: &std::sync::mpsc::Receiver<T>) -> Option<T> {
    for k in 0..20_000 {
        match rx.try_recv() {
            Ok(v) => return Some(v),
            Err(std::sync::mpsc::TryRecvError::Empty) => pause(k),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
        }
    }
    rx.recv().ok()
}

/// One step of a busy wait: a spin for the first tries, then a yield of
/// the core (the thread waited for may be waiting for one).
fn pause(tries: u32) {
    if tries < 2_000 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("in_flight", &self.flights.len())
            .field("net", &self.net)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// A cluster of `n` nodes `n0`, `n1`, … started at time zero, each
    /// knowing only the seed nodes' addresses.
    pub fn new(config: SimConfig, n: usize) -> Self {
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            now: Timestamp::ZERO,
            nodes: Vec::new(),
            by_id: HashMap::new(),
            by_addr: HashMap::new(),
            flights: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            cuts: HashSet::new(),
            groups: None,
            events: Vec::new(),
            record_events: true,
            net: NetStats::default(),
            max_size: 0,
            round_hook: None,
            logged: Vec::new(),
            round_log: Vec::new(),
        };
        for _ in 0..n {
            sim.add_node();
        }
        sim
    }

    /// Adds and starts a node (it joins through the seeds); returns its
    /// index.
    pub fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        let id = NodeId::new(format!("n{i}"));
        let address: Arc<str> = Arc::from(format!("n{i}:7800"));
        self.by_id.insert(id.clone(), i);
        self.by_addr.insert(address.clone(), i);
        self.logged.push(false);
        self.nodes.push(SimNode {
            id,
            address,
            generation: 1,
            core: None,
            armed: None,
        });
        self.start(i);
        i
    }

    fn start(&mut self, i: usize) {
        let mut gossip = self.config.gossip.clone();
        gossip.seeds = (0..self.config.seed_nodes.min(self.nodes.len().max(1)))
            .map(|s| format!("n{s}:7800"))
            .collect();
        if let Some(observers) = &self.config.observers {
            gossip.local_detection &= observers.contains(&i);
        }
        let seed = self.rng.random();
        let node = &mut self.nodes[i];
        node.core = Some(Gossip::new(
            gossip,
            node.id.clone(),
            node.address.to_string(),
            node.generation,
            seed,
            self.now,
        ));
        node.armed = None;
        self.arm(i);
    }

    /// Turns event recording off (large runs) or on.
    pub fn record_events(&mut self, on: bool) {
        self.record_events = on;
    }

    /// Installs a function called after every round any node runs (the
    /// cores then run on one thread; see [`log_rounds`](Self::log_rounds)).
    pub fn on_round(&mut self, hook: impl FnMut(usize, &Gossip, Timestamp) + 'static) {
        self.round_hook = Some(Box::new(hook));
    }

    /// Logs every round of these nodes: their own heartbeat after it and
    /// the time, read with [`take_round_log`](Self::take_round_log).
    pub fn log_rounds(&mut self, nodes: &[usize]) {
        for &i in nodes {
            if let Some(l) = self.logged.get_mut(i) {
                *l = true;
            }
        }
    }

    /// The rounds logged so far (node, heartbeat, time), in order, removed
    /// from the simulator.
    pub fn take_round_log(&mut self) -> Vec<(usize, u64, Timestamp)> {
        std::mem::take(&mut self.round_log)
    }

    /// The virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Number of nodes ever added.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no node was added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s id.
    pub fn id(&self, i: usize) -> &NodeId {
        &self.nodes[i].id
    }

    /// Node `i`'s core, `None` while crashed.
    pub fn core(&self, i: usize) -> Option<&Gossip> {
        self.nodes[i].core.as_ref()
    }

    /// Node `i`'s core, mutably (to call `set_kv` and the like; events
    /// and messages are collected at the next step).
    pub fn core_mut(&mut self, i: usize) -> Option<&mut Gossip> {
        self.nodes[i].core.as_mut()
    }

    /// True while node `i` runs.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].core.is_some()
    }

    /// Network counters.
    pub fn net(&self) -> &NetStats {
        &self.net
    }

    /// Events recorded so far, removed from the simulator.
    pub fn take_events(&mut self) -> Vec<SimEvent> {
        std::mem::take(&mut self.events)
    }

    /// Hands node `to` a message from `from` (which need not be a
    /// simulated node: a test's forger) at the current time, as if it had
    /// just arrived; its answers and events are collected at once.
    pub fn inject(&mut self, to: usize, from: &NodeId, msg: Message) -> Result<(), GossipError> {
        let now = self.now;
        let r = match self.nodes[to].core.as_mut() {
            Some(core) => core.handle_message_typed(now, from, msg),
            None => return Ok(()),
        };
        self.drain(to);
        r
    }

    /// Freezes node `i` until `until` (a process pause: its timers and
    /// deliveries wait), then resumes it with
    /// [`Gossip::observer_resumed`] before anything else.
    pub fn pause(&mut self, i: usize, until: Timestamp) {
        let Some(core) = self.nodes[i].core.take() else {
            return;
        };
        let mut core = core;
        self.run_until(until);
        core.observer_resumed(until);
        self.nodes[i].core = Some(core);
        self.nodes[i].armed = None;
        self.arm(i);
    }

    /// Stops node `i` abruptly: its state is lost, messages to it vanish.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].core = None;
        self.nodes[i].armed = None;
    }

    /// Starts node `i` again with the next generation and a blank state.
    pub fn restart(&mut self, i: usize) {
        let g = self.nodes[i]
            .core
            .as_ref()
            .map_or(self.nodes[i].generation, Gossip::generation);
        self.nodes[i].generation = g + 1;
        self.start(i);
    }

    /// Node `i` leaves gracefully.
    pub fn leave(&mut self, i: usize) {
        let now = self.now;
        if let Some(c) = self.nodes[i].core.as_mut() {
            c.leave(now);
        }
        self.arm(i);
    }

    /// Cuts the link between `a` and `b` (both directions).
    pub fn cut(&mut self, a: usize, b: usize) {
        self.cuts.insert((a.min(b), a.max(b)));
    }

    /// Restores the link between `a` and `b`.
    pub fn uncut(&mut self, a: usize, b: usize) {
        self.cuts.remove(&(a.min(b), a.max(b)));
    }

    /// Splits the cluster: nodes in different groups cannot talk; nodes in
    /// no group form one more group.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        let mut g = vec![groups.len() as u32; self.nodes.len()];
        for (k, members) in groups.iter().enumerate() {
            for &i in *members {
                g[i] = k as u32;
            }
        }
        self.groups = Some(g);
    }

    /// Ends the partition and restores every cut link.
    pub fn heal(&mut self) {
        self.groups = None;
        self.cuts.clear();
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        if self.cuts.contains(&(a.min(b), a.max(b))) {
            return false;
        }
        match &self.groups {
            Some(g) => g.get(a) == g.get(b),
            None => true,
        }
    }

    fn arm(&mut self, i: usize) {
        let Some(t) = self.nodes[i].core.as_ref().and_then(Gossip::poll_timeout) else {
            return;
        };
        if self.nodes[i].armed != Some(t) {
            self.nodes[i].armed = Some(t);
            self.timers.push(Reverse((t, i)));
        }
    }

    /// Advances by `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end);
    }

    /// Advances by `rounds` gossip intervals.
    pub fn run_rounds(&mut self, rounds: u64) {
        let d = self.config.gossip.interval.saturating_mul(rounds as u32);
        self.run_for(d);
    }

    /// Processes every delivery and timer up to `end`, then sets the
    /// clock to `end`.
    pub fn run_until(&mut self, end: Timestamp) {
        let lookahead = self
            .config
            .latency_min
            .min(self.config.gossip.interval)
            .as_micros() as u64;
        if self.config.threads >= 2 && self.round_hook.is_none() && lookahead > 0 {
            self.run_parallel(end, lookahead);
        }
        while let Some((at, i, job)) = self.next_job(end, None) {
            self.now = at;
            let timer = matches!(job, Job::Timer { .. });
            let out = execute(
                self.nodes[i].core.as_mut(),
                i,
                at,
                job,
                self.config.encode,
                self.record_events,
                self.round_hook.as_mut(),
            );
            self.apply(i, at, timer, out);
        }
        self.now = self.now.max(end);
    }

    /// The next event at or before `end` (and before `horizon`, if given),
    /// in the one-thread order: by time, deliveries first at equal times
    /// (a message sent for `t` is part of `t`), then by send order or node.
    /// Stale timers (re-armed or crashed since) are dropped. In a window
    /// (`horizon`: its end, the claim stamps and this window's stamp), a
    /// valid timer is claimed instead of disarmed ([`apply`](Self::apply)
    /// disarms it), so that a duplicate in the heap is stale as it would
    /// be on one thread.
    fn next_job(
        &mut self,
        end: Timestamp,
        mut horizon: Option<(Timestamp, &mut [u64], u64)>,
    ) -> Option<(Timestamp, usize, Job)> {
        let limit = horizon.as_ref().map(|h| h.0);
        loop {
            let next_flight = self.flights.peek().map(|f| f.0.at);
            let next_timer = self.timers.peek().map(|t| t.0.0);
            let (t, is_flight) = match (next_flight, next_timer) {
                (None, None) => return None,
                (Some(f), None) => (f, true),
                (None, Some(t)) => (t, false),
                (Some(f), Some(t)) => {
                    if f <= t {
                        (f, true)
                    } else {
                        (t, false)
                    }
                }
            };
            if t > end || limit.is_some_and(|h| t >= h) {
                return None;
            }
            if is_flight {
                let Reverse(f) = self.flights.pop()?;
                let from = self.nodes[f.from].id.clone();
                let job = Job::Deliver {
                    from,
                    payload: f.payload,
                };
                return Some((f.at, f.to, job));
            }
            let Reverse((t, i)) = self.timers.pop()?;
            let taken = horizon.as_ref().is_some_and(|(_, c, w)| c[i] == *w);
            if self.nodes[i].armed != Some(t) || taken {
                continue; // stale: re-armed or crashed since
            }
            if let Some((_, c, w)) = horizon.as_mut() {
                c[i] = *w;
            }
            return Some((
                t,
                i,
                Job::Timer {
                    log: self.logged[i],
                },
            ));
        }
    }

    /// Applies what an event at node `i` did, as the one-thread order
    /// requires: counts, sends (and their random draws), events, timer.
    fn apply(&mut self, i: usize, at: Timestamp, timer: bool, out: Outcome) {
        self.now = at;
        if timer {
            self.nodes[i].armed = None;
        }
        if out.down {
            if !timer {
                self.net.undeliverable += 1;
            }
            return;
        }
        if out.rejected {
            self.net.rejected += 1;
        }
        if let Some(hb) = out.round {
            self.round_log.push((i, hb, at));
        }
        for (to_node, to_addr, payload, size) in out.sends {
            self.send(i, to_node, &to_addr, payload, size);
        }
        for event in out.events {
            self.events.push(SimEvent {
                at,
                observer: i,
                event,
            });
        }
        if let Some(t) = out.timeout {
            if self.nodes[i].armed != Some(t) {
                self.nodes[i].armed = Some(t);
                self.timers.push(Reverse((t, i)));
            }
        }
    }

    /// [`run_until`](Self::run_until) on two threads, window by window:
    /// the events of the next `lookahead` microseconds cannot cause one
    /// another (a message takes at least that long, a timer comes back an
    /// interval later), so the events of different nodes run side by side
    /// (a node's own in order, by whichever thread claims them first, its
    /// core lent along), and then every outcome is applied in the
    /// one-thread order. Returns when the next event is past `end`.
    fn run_parallel(&mut self, end: Timestamp, lookahead: u64) {
        /// Below this estimated work ([`job_cost`], about nanoseconds) a
        /// window runs on this thread alone: handing it over costs more.
        const MIN_SHARED_WORK: usize = 20_000;
        let (encode, record) = (self.config.encode, self.record_events);
        std::thread::scope(|scope| {
            let (to_worker, windows) = std::sync::mpsc::channel::<Arc<Window>>();
            scope.spawn(move || {
                while let Some(w) = recv_soon(&windows) {
                    w.work(encode, record);
                }
            });
            let n = self.nodes.len();
            // Window stamps of claimed timers, and of the node's group.
            let mut claimed = vec![0u64; n];
            let mut group_of = vec![(0u64, 0usize); n];
            let mut window = 0u64;
            let mut order: Vec<(usize, Timestamp, bool)> = Vec::new();
            while let Some(start) = self.next_time().filter(|&t| t <= end) {
                let horizon = Timestamp::from_micros(start.as_micros().saturating_add(lookahead));
                window += 1;
                order.clear();
                let mut groups: Vec<Group> = Vec::new();
                let mut work: Vec<usize> = Vec::new();
                while let Some((at, i, job)) =
                    self.next_job(end, Some((horizon, &mut claimed, window)))
                {
                    let cost = job_cost(self.nodes[i].core.as_ref(), &job);
                    let k = order.len();
                    order.push((i, at, matches!(job, Job::Timer { .. })));
                    if group_of[i].0 != window {
                        group_of[i] = (window, groups.len());
                        groups.push((i, None, Vec::new()));
                        work.push(0);
                    }
                    let g = group_of[i].1;
                    groups[g].2.push((k, at, job));
                    work[g] += cost;
                }
                let mut outcomes: Vec<Option<Outcome>> = (0..order.len()).map(|_| None).collect();
                let total: usize = work.iter().sum();
                if groups.len() > 1 && total >= MIN_SHARED_WORK {
                    // The heaviest first, so that the last claimed are small.
                    let mut by_work: Vec<usize> = (0..groups.len()).collect();
                    by_work.sort_by_key(|&g| std::cmp::Reverse(work[g]));
                    let mut slots: Vec<Option<Group>> = groups.into_iter().map(Some).collect();
                    let mut sorted = Vec::with_capacity(slots.len());
                    for g in by_work {
                        if let Some((i, _, jobs)) = slots[g].take() {
                            sorted.push((i, self.nodes[i].core.take(), jobs));
                        }
                    }
                    let w = Arc::new(Window::new(sorted));
                    let shared = to_worker.send(w.clone()).is_ok();
                    w.work(encode, record);
                    // The other thread may still run its last group (unless
                    // it died: it let go of the window; the scope re-raises
                    // its panic).
                    let mut tries = 0;
                    while shared && !w.finished() && Arc::strong_count(&w) > 1 {
                        pause(tries);
                        tries = tries.saturating_add(1);
                    }
                    for (i, core, outs) in w.take_results() {
                        self.nodes[i].core = core;
                        for (k, out) in outs {
                            outcomes[k] = Some(out);
                        }
                    }
                } else {
                    for (i, _, jobs) in groups {
                        let core = self.nodes[i].core.take();
                        let (i, core, outs) = run_group((i, core, jobs), encode, record);
                        self.nodes[i].core = core;
                        for (k, out) in outs {
                            outcomes[k] = Some(out);
                        }
                    }
                }
                for (k, out) in outcomes.into_iter().enumerate() {
                    let (i, at, timer) = order[k];
                    if let Some(out) = out {
                        self.apply(i, at, timer, out);
                    }
                }
                debug_assert!(self.next_time().is_none_or(|t| t >= horizon || t > end));
            }
        });
    }

    /// Time of the next event, if any.
    fn next_time(&self) -> Option<Timestamp> {
        let f = self.flights.peek().map(|f| f.0.at);
        let t = self.timers.peek().map(|t| t.0.0);
        match (f, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Collects node `i`'s messages and events and re-arms its timer.
    fn drain(&mut self, i: usize) {
        let encode = self.config.encode;
        loop {
            let Some(core) = self.nodes[i].core.as_mut() else {
                return;
            };
            let (to_node, to_addr, payload, size) = if encode {
                match core.poll_transmit() {
                    Some(t) => {
                        let n = t.payload.len();
                        (
                            t.to_node,
                            Arc::from(t.to_addr),
                            Payload::Bytes(t.payload),
                            n,
                        )
                    }
                    None => break,
                }
            } else {
                match core.poll_transmit_typed() {
                    Some(t) => (
                        t.to_node,
                        t.to_addr,
                        Payload::Typed(Box::new(t.message)),
                        t.size,
                    ),
                    None => break,
                }
            };
            self.send(i, to_node, &to_addr, payload, size);
        }
        if let Some(core) = self.nodes[i].core.as_mut() {
            while let Some(event) = core.poll_event() {
                if self.record_events {
                    self.events.push(SimEvent {
                        at: self.now,
                        observer: i,
                        event,
                    });
                }
            }
        }
        self.arm(i);
    }

    fn send(
        &mut self,
        from: usize,
        to_node: Option<NodeId>,
        to_addr: &str,
        payload: Payload,
        size: usize,
    ) {
        self.net.sent += 1;
        self.net.bytes += size as u64;
        self.max_size = self.max_size.max(size);
        let to = match &to_node {
            Some(id) => self.by_id.get(id).copied(),
            None => self.by_addr.get(to_addr).copied(),
        };
        let Some(to) = to else {
            self.net.undeliverable += 1;
            return;
        };
        if !self.connected(from, to) {
            self.net.cut += 1;
            return;
        }
        if self.config.loss > 0.0 && self.rng.random::<f64>() < self.config.loss {
            self.net.lost += 1;
            return;
        }
        let lo = self.config.latency_min.as_micros() as u64;
        let hi = (self.config.latency_max.as_micros() as u64).max(lo);
        let latency = self.rng.random_range(lo..=hi);
        self.seq += 1;
        self.flights.push(Reverse(Flight {
            at: Timestamp::from_micros(self.now.as_micros() + latency),
            seq: self.seq,
            from,
            to,
            payload,
        }));
    }
}

/// Parameters of a measurement run ([`run_experiment`]).
#[derive(Debug, Clone)]
pub struct Experiment {
    /// Cluster size.
    pub nodes: usize,
    /// Simulated rounds in total, warm-up included.
    pub rounds: u64,
    /// Rounds before measuring: the cluster forms through the seeds.
    pub warmup: u64,
    /// Nodes crashed during the measurement (spread over it).
    pub crashes: usize,
    /// Nodes whose heartbeats are tracked for the dissemination figure.
    pub tracked: usize,
    /// Key/value bytes each node publishes (service discovery data).
    pub kv_bytes: usize,
    /// Nodes that judge their peers, drawn (seeded) among the nodes that
    /// do not crash; the others gossip without detectors, and the
    /// detection figures and false suspicions are those of this sample.
    /// `None`, or at least `nodes`: every node judges (a detector per node
    /// pair: most of a large run's time and memory).
    pub observers: Option<usize>,
    /// The simulated network and the cores' settings
    /// ([`SimConfig::observers`] is set from [`observers`](Self::observers)).
    pub sim: SimConfig,
}

impl Experiment {
    /// A run of `nodes` nodes for `rounds` rounds with the default
    /// network (1–10 ms latency, no loss) and gossip settings.
    pub fn new(nodes: usize, rounds: u64) -> Self {
        let warmup = default_warmup(nodes);
        Experiment {
            nodes,
            rounds: rounds.max(warmup + 1),
            warmup,
            crashes: 3,
            tracked: 16,
            kv_bytes: 48,
            observers: None,
            sim: SimConfig::default(),
        }
    }
}

/// Warm-up that lets a cluster of `n` nodes form and its detectors leave
/// their cold start.
pub fn default_warmup(n: usize) -> u64 {
    let log2 = (n.max(2) as f64).log2().ceil() as u64;
    (2 * log2 + 10).min(60)
}

/// What a measurement run found. Rounds are gossip intervals.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    /// Cluster size.
    pub nodes: usize,
    /// Rounds simulated, warm-up included.
    pub rounds: u64,
    /// Warm-up rounds excluded from the cost and dissemination figures.
    pub warmup_rounds: u64,
    /// Message loss probability.
    pub loss: f64,
    /// Peers contacted per round.
    pub fanout: usize,
    /// Seed of the run.
    pub seed: u64,
    /// Rounds until a new heartbeat of a tracked node is known to every
    /// live node: median.
    pub propagation_rounds_p50: f64,
    /// The same, 99th percentile.
    pub propagation_rounds_p99: f64,
    /// The same, worst case.
    pub propagation_rounds_max: f64,
    /// Heartbeats measured for the figures above.
    pub propagation_samples: usize,
    /// log2(nodes) + 2: the dissemination target.
    pub propagation_target_rounds: f64,
    /// Encoded bytes sent per node per round after the warm-up.
    pub bytes_per_node_per_round: f64,
    /// Messages sent per node per round after the warm-up.
    pub messages_per_node_per_round: f64,
    /// What a plain full-state push (every node sends its whole table to
    /// `fanout` peers each round) would send per node per round.
    pub full_state_push_bytes_per_node_per_round: f64,
    /// Largest message sent, in bytes.
    pub max_message_bytes: usize,
    /// Nodes crashed during the measurement.
    pub crashes: usize,
    /// Nodes that judged their peers: the detection figures and false
    /// suspicions below are theirs (all nodes unless `--observers`).
    pub observers: usize,
    /// Rounds from a crash until every live observer suspects the node:
    /// 99th percentile over the crashes.
    pub detection_rounds_p99: f64,
    /// Rounds from a crash until one live observer suspects it (median
    /// over observers and crashes).
    pub detection_rounds_p50_per_observer: f64,
    /// Crashes not suspected by every live observer by the end of the run.
    pub undetected_crashes: usize,
    /// Dead verdicts (by the observers) about nodes that were running.
    pub false_suspicions: u64,
    /// Messages lost by the network.
    pub messages_lost: u64,
    /// Wall-clock duration of the run, in milliseconds.
    pub wall_ms: u64,
}

/// Runs one measurement: forms a cluster of `e.nodes`, tracks new
/// heartbeats of `e.tracked` nodes until every live node knows them,
/// counts bytes, crashes `e.crashes` nodes and times their detection.
pub fn run_experiment(e: &Experiment) -> Report {
    let started = std::time::Instant::now();
    let interval = e.sim.gossip.interval;
    let interval_us = interval.as_micros().max(1) as f64;
    let n = e.nodes.max(2);
    let mut rng = StdRng::seed_from_u64(e.sim.seed ^ 0x5eed);
    // Crashed nodes are chosen among the non-seeds, tracked nodes among
    // the rest.
    let mut pool: Vec<usize> = (e.sim.seed_nodes.min(n)..n).collect();
    let mut pick = |k: usize, pool: &mut Vec<usize>| -> Vec<usize> {
        let mut out = Vec::new();
        for _ in 0..k.min(pool.len()) {
            let j = rng.random_range(0..pool.len());
            out.push(pool.swap_remove(j));
        }
        out
    };
    let crashed = pick(e.crashes.min(n / 2), &mut pool);
    let tracked = pick(e.tracked, &mut pool);
    let observers = choose_observers(n, e.observers, &crashed, e.sim.seed);

    let mut config = e.sim.clone();
    config.gossip.heartbeat_events = false;
    config.observers = (observers.len() < n).then(|| observers.clone());
    let mut sim = Sim::new(config, n);
    for i in 0..n {
        if let Some(c) = sim.core_mut(i) {
            // Service discovery data as a fleet would publish it.
            let value = format!("svc-{}", i % 17);
            let _ = c.set_kv("service", &value);
            let pad = e.kv_bytes.saturating_sub(7 + value.len() + 8);
            let _ = c.set_kv("endpoint", &"e".repeat(pad.min(1024)));
        }
    }

    // Heartbeats of tracked nodes: (node, heartbeat, created at), from
    // the rounds after the warm-up.
    sim.log_rounds(&tracked);
    let warm_end = Timestamp::from_duration(interval * e.warmup as u32);

    let measure_rounds = e.rounds.saturating_sub(e.warmup).max(1);
    // Crashes are spread over the first half of the measurement so
    // each has time to be detected.
    let crash_times: Vec<(Timestamp, usize)> = crashed
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let r =
                e.warmup + 1 + (k as u64 + 1) * (measure_rounds / 2) / (crashed.len() as u64 + 1);
            (Timestamp::from_duration(interval * r as u32), i)
        })
        .collect();

    // The warm-up's events (every node joining every node: N^2 of them)
    // are not looked at: not kept.
    sim.record_events(false);
    sim.run_rounds(e.warmup);
    sim.record_events(true);
    let warm_net = sim.net().clone();
    let step = interval / 4;
    let end = Timestamp::from_duration(interval * e.rounds as u32);
    let mut pending: Vec<(usize, u64, Timestamp)> = Vec::new();
    // Per tracked node, the last node found not to know a pending
    // heartbeat of it.
    let mut blocker: Vec<usize> = vec![0; tracked.len()];
    // Per tracked node and node, a heartbeat the node is known to know.
    let mut seen: Vec<Vec<u64>> = vec![vec![0; n]; tracked.len()];
    let mut propagation: Vec<f64> = Vec::new();
    let mut crashed_at: HashMap<usize, Timestamp> = HashMap::new();
    // (crashed node, observer) -> first dead verdict
    let mut verdicts: HashMap<(usize, usize), Timestamp> = HashMap::new();
    let mut false_suspicions = 0u64;
    // Lost-before-warm-up verdicts are not counted; the first check below
    // covers from the end of the warm-up.
    while sim.now() < end {
        let next = (sim.now() + step).min(end);
        for &(t, i) in &crash_times {
            if t > sim.now() && t <= next {
                sim.run_until(t);
                sim.crash(i);
                crashed_at.insert(i, t);
            }
        }
        sim.run_until(next);
        let now = sim.now();
        for ev in sim.take_events() {
            if let Event::NodeDead { node, .. } = &ev.event {
                let Some(&target) = sim.by_id.get(node) else {
                    continue;
                };
                match crashed_at.get(&target) {
                    Some(&t) if t <= ev.at => {
                        verdicts.entry((target, ev.observer)).or_insert(ev.at);
                    }
                    _ => false_suspicions += 1,
                }
            }
        }
        pending.extend(sim.take_round_log().into_iter().filter(|p| p.2 >= warm_end));
        // Which tracked heartbeats does every live node know by now? A
        // node's knowledge of a heartbeat only grows (tracked nodes neither
        // restart nor leave, and crashed nodes stay down), so `seen` keeps
        // a lower bound per tracked node and node and only nodes below a
        // pending heartbeat are asked again; the first one still below it
        // settles that it (and every later one) is not complete yet.
        for (k, &s) in tracked.iter().enumerate() {
            let id = sim.id(s).clone();
            // Its position in the last table asked, tried first in the next.
            let mut hint = 0;
            let mut mine: Vec<u64> = pending.iter().filter(|p| p.0 == s).map(|p| p.1).collect();
            mine.sort_unstable();
            let mut complete_to = 0;
            'heartbeats: for &hb in &mine {
                // The node that blocked the last check usually still does.
                let order = std::iter::once(blocker[k]).chain(0..n);
                for i in order {
                    if i == s || seen[k][i] >= hb {
                        continue;
                    }
                    let Some(core) = sim.core(i) else { continue };
                    seen[k][i] = core.heartbeat_hinted(&id, &mut hint).unwrap_or(0);
                    if seen[k][i] < hb {
                        blocker[k] = i;
                        break 'heartbeats;
                    }
                }
                complete_to = hb;
            }
            pending.retain(|&(node, hb, t)| {
                if node == s && hb <= complete_to {
                    propagation.push(now.micros_since(t) as f64 / interval_us);
                    false
                } else {
                    true
                }
            });
        }
    }
    // Heartbeats created in the last rounds had no time to spread: only
    // those older than the target count as missing.
    let target = (n as f64).log2() + 2.0;
    let late = Timestamp::from_micros(
        end.as_micros()
            .saturating_sub((target * interval_us) as u64),
    );
    let missing = pending.iter().filter(|p| p.2 < late).count();
    for _ in 0..missing {
        propagation.push(f64::INFINITY);
    }

    let mut detection = Vec::new();
    let mut per_observer = Vec::new();
    let mut undetected = 0;
    for (&c, &t) in &crashed_at {
        let mut worst: Option<f64> = Some(0.0);
        for &i in &observers {
            if i == c || !sim.is_up(i) {
                continue;
            }
            match verdicts.get(&(c, i)) {
                Some(&v) => {
                    let r = v.micros_since(t) as f64 / interval_us;
                    per_observer.push(r);
                    worst = worst.map(|w| w.max(r));
                }
                None => worst = None,
            }
        }
        match worst {
            Some(w) => detection.push(w),
            None => undetected += 1,
        }
    }

    let live = (0..n).filter(|&i| sim.is_up(i)).count().max(1);
    let net = sim.net().clone();
    let sent_bytes = net.bytes - warm_net.bytes;
    let sent_msgs = net.sent - warm_net.sent;
    // Node-rounds in the measurement: crashed nodes stop sending.
    let node_rounds: f64 = (n as f64) * measure_rounds as f64
        - crashed_at
            .values()
            .map(|t| end.micros_since(*t) as f64 / interval_us)
            .sum::<f64>();
    let full_push = full_state_push_bytes(&sim, live);
    // Freeing a large cluster takes a second or more: it happens beside
    // the caller (nothing depends on it), not before it gets the report.
    let nodes = std::mem::take(&mut sim.nodes);
    std::thread::spawn(move || drop(nodes));
    Report {
        nodes: n,
        rounds: e.rounds,
        warmup_rounds: e.warmup,
        loss: e.sim.loss,
        fanout: e.sim.gossip.fanout,
        seed: e.sim.seed,
        propagation_rounds_p50: percentile(&mut propagation.clone(), 0.5),
        propagation_rounds_p99: percentile(&mut propagation.clone(), 0.99),
        propagation_rounds_max: percentile(&mut propagation.clone(), 1.0),
        propagation_samples: propagation.len(),
        propagation_target_rounds: target,
        bytes_per_node_per_round: sent_bytes as f64 / node_rounds.max(1.0),
        messages_per_node_per_round: sent_msgs as f64 / node_rounds.max(1.0),
        full_state_push_bytes_per_node_per_round: full_push * e.sim.gossip.fanout as f64,
        max_message_bytes: sim.max_sent_size(),
        crashes: crashed_at.len(),
        observers: observers.len(),
        detection_rounds_p99: percentile(&mut detection, 0.99),
        detection_rounds_p50_per_observer: percentile(&mut per_observer, 0.5),
        undetected_crashes: undetected,
        false_suspicions,
        messages_lost: net.lost - warm_net.lost,
        wall_ms: started.elapsed().as_millis() as u64,
    }
}

/// The nodes that judge their peers, sorted: every node when `wanted` is
/// `None` or at least `n`, otherwise `wanted` of the nodes not in
/// `crashed` (all of them if fewer), drawn with their own seeded
/// generator so that the other choices of a run do not depend on it.
fn choose_observers(n: usize, wanted: Option<usize>, crashed: &[usize], seed: u64) -> Vec<usize> {
    let Some(k) = wanted.filter(|&k| k < n) else {
        return (0..n).collect();
    };
    let pool: Vec<usize> = (0..n).filter(|i| !crashed.contains(i)).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0b5e_4e45);
    let mut chosen: Vec<usize> = rand::seq::index::sample(&mut rng, pool.len(), k.min(pool.len()))
        .into_iter()
        .map(|j| pool[j])
        .collect();
    chosen.sort_unstable();
    chosen
}

/// Bytes of one message carrying a live node's whole table as full
/// states (what one push of a full-state protocol costs), measured on the
/// first running node; several messages' worth when it exceeds the cap.
fn full_state_push_bytes(sim: &Sim, _live: usize) -> f64 {
    let Some(core) = (0..sim.len()).find_map(|i| sim.core(i)) else {
        return 0.0;
    };
    let mut bytes = Message::empty_size(
        core.config().cluster_name.len(),
        core.self_id().as_str().len(),
        0,
    );
    for m in core.members() {
        let kv: wire::KvEntries = m
            .kv()
            .map(|(k, v)| wire::KvEntry {
                key: k.to_owned(),
                value: v.to_owned(),
                version: m.version(),
            })
            .collect();
        let d = wire::NodeDelta {
            node_id: m.node_id().clone(),
            generation: m.generation(),
            heartbeat: m.heartbeat(),
            status: m.declared_status(),
            from_version: 0,
            version: m.version(),
            address: Some(m.address().to_owned()),
            kv,
        };
        bytes += d.wire_size();
    }
    bytes as f64
}

impl Sim {
    /// Largest message sent so far, in bytes.
    pub fn max_sent_size(&self) -> usize {
        self.max_size
    }
}

/// The `q` quantile (nearest rank) of `v`; NaN when empty. Infinite
/// values (never completed) sort last.
fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Counts the members of a core's table by local judgement.
pub fn status_counts(core: &Gossip) -> HashMap<MemberStatus, usize> {
    let mut out = HashMap::new();
    for m in core.members() {
        *out.entry(m.status()).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(observers: Option<usize>) -> Experiment {
        let mut e = Experiment::new(30, 70);
        e.sim.loss = 0.1;
        e.observers = observers;
        e
    }

    fn without_time(mut r: Report) -> Report {
        r.wall_ms = 0;
        r
    }

    #[test]
    fn a_sample_of_observers_is_reported_and_replays() {
        let all = run_experiment(&small(None));
        assert_eq!(all.observers, 30);
        let some = run_experiment(&small(Some(8)));
        assert_eq!(some.observers, 8);
        assert_eq!(some.undetected_crashes, 0);
        assert_eq!(some.false_suspicions, 0);
        // Crashed nodes stay partners of the nodes that do not judge, so
        // dissemination differs a little after the first crash, not more.
        assert!(some.propagation_rounds_p99 <= some.propagation_target_rounds);
        assert!(
            (some.bytes_per_node_per_round / all.bytes_per_node_per_round - 1.0).abs() < 0.05,
            "{} vs {}",
            some.bytes_per_node_per_round,
            all.bytes_per_node_per_round
        );
        assert_eq!(
            without_time(run_experiment(&small(Some(8)))),
            without_time(some)
        );
        // A sample as large as the cluster is the whole cluster.
        assert_eq!(
            without_time(run_experiment(&small(Some(30)))),
            without_time(all)
        );
    }

    #[test]
    fn a_report_is_the_same_on_two_threads() {
        let mut e = small(Some(8));
        e.sim.threads = 2;
        let two = run_experiment(&e);
        e.sim.threads = 1;
        assert_eq!(without_time(run_experiment(&e)), without_time(two));
    }

    #[test]
    fn observers_are_drawn_among_the_nodes_that_do_not_crash() {
        let crashed = [4, 9, 17];
        let o = choose_observers(30, Some(10), &crashed, 7);
        assert_eq!(o.len(), 10);
        assert!(o.windows(2).all(|w| w[0] < w[1]));
        assert!(o.iter().all(|i| !crashed.contains(i) && *i < 30));
        assert_eq!(o, choose_observers(30, Some(10), &crashed, 7));
        assert_ne!(o, choose_observers(30, Some(10), &crashed, 8));
        assert_eq!(choose_observers(5, None, &[1], 7), vec![0, 1, 2, 3, 4]);
        assert_eq!(choose_observers(5, Some(9), &[1], 7), vec![0, 1, 2, 3, 4]);
        assert_eq!(choose_observers(5, Some(4), &[1], 7), vec![0, 2, 3, 4]);
    }
}
