//! The alert engine: from per-peer phi to pages, once per incident
//! fleet-wide. Sans-IO: see [`AlertEngine`].

use crate::config::AlertConfig;
use crate::rendezvous::{designated_observers, node_hash, weight};
use crate::suspicion::encode_suspicions;
use phimon_detector::Timestamp;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

/// A peer's membership status, as gossiped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MemberStatus {
    /// A member in good standing.
    #[default]
    Alive,
    /// Announced a graceful shutdown: never paged about.
    Leaving,
    /// Left gracefully: never paged about.
    Left,
    /// Declared dead by the membership layer (still paged about: being
    /// dead is what the pages are for).
    Dead,
}

impl MemberStatus {
    /// The lower-case name used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
            MemberStatus::Dead => "dead",
        }
    }

    /// Every status, for metric label sets.
    pub const ALL: [MemberStatus; 4] = [
        MemberStatus::Alive,
        MemberStatus::Leaving,
        MemberStatus::Left,
        MemberStatus::Dead,
    ];

    /// Leaving or left: a graceful departure, never a page.
    pub fn is_departing(self) -> bool {
        matches!(self, MemberStatus::Leaving | MemberStatus::Left)
    }
}

/// One peer as this node sees it at a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    /// The peer's node id.
    pub node_id: String,
    /// Its generation (incarnation), bumped on every restart.
    pub generation: u64,
    /// Its latest known heartbeat counter (monotonic within a
    /// generation). A silent node's counter stops, and gossip spreads
    /// its last value to every node, so observers use it to agree on
    /// incident ids without talking to each other.
    pub heartbeat: u64,
    /// Its gossiped membership status.
    pub status: MemberStatus,
    /// Its phi as computed by this node's detector at this tick (0 before
    /// the first heartbeat).
    pub phi: f64,
}

/// Everything the engine needs from the rest of the node at one tick.
/// The runtime rebuilds (or updates) it before every
/// [`AlertEngine::handle_tick`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterView {
    /// This node's own generation (part of the id of a partition page).
    pub generation: u64,
    /// Every known peer (any entry carrying this node's own id is
    /// ignored). Peers absent from the list are forgotten.
    pub members: Vec<MemberView>,
    /// The decoded suspicion report of every other observer, keyed by the
    /// observer's node id (see [`crate::decode_suspicions`]). Reports of
    /// observers this node suspects itself are ignored by the engine.
    pub suspicions: BTreeMap<String, BTreeSet<String>>,
    /// This node itself stalled recently (local-health awareness): it
    /// raises no new suspicion and pages no peer while degraded.
    pub degraded: bool,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// An incident opened (or a grouped incident gained members).
    Suspected,
    /// An incident resolved.
    Recovered,
    /// The subject came back with a new generation.
    Restarted,
}

impl EventKind {
    /// The `event` value of the generic payload.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Suspected => "suspected",
            EventKind::Recovered => "recovered",
            EventKind::Restarted => "restarted",
        }
    }
}

/// What an incident is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One peer (`subject`).
    Node,
    /// The observer itself: it lost contact with most of the fleet at
    /// once and reports that instead of paging about everyone.
    Partition,
    /// Several peers that failed together (`nodes`), paged once.
    Group,
}

impl Scope {
    /// The `scope` value of the generic payload.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Node => "node",
            Scope::Partition => "partition",
            Scope::Group => "group",
        }
    }
}

/// One page to deliver. Every observer that emits the same event of the
/// same incident produces the same `incident_id` and `event_id`, so
/// receivers deduplicate on `event_id` (the `webhook-id` header).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    /// Stable id of the incident: all pages of one incident share it.
    pub incident_id: String,
    /// Stable id of this event of the incident (Standard Webhooks
    /// `webhook-id`).
    pub event_id: String,
    /// What happened.
    pub kind: EventKind,
    /// What the incident is about.
    pub scope: Scope,
    /// The node the page is about: the peer (`Node`), this observer
    /// (`Partition`), or empty (`Group`).
    pub subject: String,
    /// Every node concerned: `[subject]`, the peers that went silent
    /// (`Partition`), or the group's members (`Group`), sorted.
    pub nodes: Vec<String>,
    /// The subject's generation (`Node`), this node's (`Partition`), 0
    /// (`Group`).
    pub generation: u64,
    /// The subject's phi when the event was emitted (the highest member
    /// phi for groups and partitions).
    pub phi: f64,
    /// The suspicion threshold in force.
    pub threshold: f64,
    /// The cluster name.
    pub cluster: String,
    /// The node that emitted the event.
    pub observer: String,
    /// When the event was emitted (caller's monotonic clock).
    pub at: Timestamp,
    /// When the incident started on this observer's clock.
    pub started_at: Timestamp,
}

/// Local, hysteretic suspicion of one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    Trusted,
    /// phi >= threshold since `since`, waiting for `for` to pass.
    Pending {
        since: Timestamp,
    },
    /// Suspected since `since`, until phi < resolve_threshold.
    Suspected {
        since: Timestamp,
    },
}

/// An incident this observer paged and therefore owes the resolution of.
#[derive(Debug, Clone)]
struct Held {
    id: String,
    started: Timestamp,
    generation: u64,
}

#[derive(Debug, Clone)]
struct Subject {
    generation: u64,
    heartbeat: u64,
    status: MemberStatus,
    phi: f64,
    local: Local,
    /// A majority of the subject's designated observers suspect it, since.
    confirmed_since: Option<Timestamp>,
    held: Option<Held>,
    /// A new generation was seen and not yet announced (announcing waits
    /// while this node is degraded).
    restart_pending: bool,
}

#[derive(Debug, Clone)]
struct Isolation {
    id: String,
    started: Timestamp,
    /// Peers that went silent in the episode.
    silent: BTreeSet<String>,
    /// Peers that were not long-silent when it started.
    base: BTreeSet<String>,
}

#[derive(Debug, Clone)]
struct Group {
    id: String,
    started: Timestamp,
    members: BTreeSet<String>,
    seq: u32,
}

/// Rendezvous key of the group leader: not a node id (no `:` in DNS).
const GROUP_LEADER_KEY: &str = "phimon:group-leader";

/// Per-tick fleet facts about one subject of interest.
struct Agreement {
    confirmed: bool,
    /// This node is designated for the subject, suspects it, and ranks
    /// first among the designated observers that do.
    leader: bool,
    /// This node ranks first among all designated observers.
    first: bool,
}

/// Turns per-peer phi into pages: hysteresis, `for`, restarts, quorum of
/// designated observers, isolation and mass-failure grouping.
///
/// Sans-IO: it reads no clock, opens no socket and spawns nothing; time
/// comes in as [`Timestamp`]s, and it is fully deterministic.
///
/// Call order, every tick of the runtime (and at the latest at
/// [`poll_timeout`](Self::poll_timeout)):
/// 1. [`handle_tick`](Self::handle_tick) with the current [`ClusterView`];
/// 2. [`poll_event`](Self::poll_event) until `None`, writing each event to
///    the outbox;
/// 3. [`suspicion_report`](Self::suspicion_report) into the gossip
///    key/value map under [`crate::SUSPICIONS_KEY`];
/// 4. arm the timer at [`poll_timeout`](Self::poll_timeout).
///
/// Semantics:
/// - phi >= `threshold` held for `for` makes a peer locally suspected;
///   phi < `resolve_threshold` makes it trusted again.
/// - Only the `k` designated observers of a subject (rendezvous over the
///   live nodes) page about it, only when a majority of them suspect it
///   (their reports are gossiped), and only the first-ranked of the
///   agreeing observers sends. Pages of the same incident carry the same
///   ids on every observer, so the rare duplicate (views that differ
///   during gossip propagation) is deduplicated by receivers.
/// - The observer that paged owes the `recovered`: it sends it when the
///   peer is trusted again, restarts (after a `restarted`) or leaves.
/// - A new generation with no open incident emits a `restarted` from the
///   first-ranked designated observer.
/// - When more than half of the peers went silent within
///   `isolation_window`, this node is isolated: it sends one `Partition`
///   page about itself and nothing about the peers until contact is back.
/// - When at least `mass_failure_min` peers are confirmed at once, the
///   first-ranked live node sends one `Group` page for all of them
///   instead of per-node pages.
/// - While `degraded`, no new suspicion is raised and no peer is paged.
#[derive(Debug)]
pub struct AlertEngine {
    config: AlertConfig,
    self_id: String,
    self_generation: u64,
    subjects: BTreeMap<String, Subject>,
    events: VecDeque<AlertEvent>,
    isolation: Option<Isolation>,
    isolation_seq: u64,
    mass_since: Option<Timestamp>,
    group: Option<Group>,
    report: Vec<String>,
    timeout: Option<Timestamp>,
}

fn hex_digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefix every part so no two part lists hash alike.
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut s = String::with_capacity(32);
    for b in &d[..16] {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The incident id of a node suspicion: a function of what every observer
/// agrees on (cluster, subject, generation, last heartbeat), so all
/// observers name the incident alike.
pub fn node_incident_id(cluster: &str, subject: &str, generation: u64, heartbeat: u64) -> String {
    let id = hex_digest(&[
        b"node",
        cluster.as_bytes(),
        subject.as_bytes(),
        &generation.to_be_bytes(),
        &heartbeat.to_be_bytes(),
    ]);
    format!("inc_{id}")
}

/// The id of one event of an incident: `seq` counts the updates of a
/// grouped incident (0 otherwise).
pub fn event_id(incident_id: &str, kind: EventKind, seq: u32) -> String {
    let id = hex_digest(&[
        incident_id.as_bytes(),
        kind.as_str().as_bytes(),
        &seq.to_be_bytes(),
    ]);
    format!("msg_{id}")
}

fn sane_phi(phi: f64) -> f64 {
    if phi.is_nan() { 0.0 } else { phi.max(0.0) }
}

impl AlertEngine {
    /// An engine for the node `self_id`. Nothing is random: every
    /// decision is a function of the inputs, so no seed is needed.
    pub fn new(config: AlertConfig, self_id: impl Into<String>) -> Self {
        AlertEngine {
            config,
            self_id: self_id.into(),
            self_generation: 0,
            subjects: BTreeMap::new(),
            events: VecDeque::new(),
            isolation: None,
            isolation_seq: 0,
            mass_since: None,
            group: None,
            report: Vec::new(),
            timeout: None,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &AlertConfig {
        &self.config
    }

    /// The next event to deliver, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<AlertEvent> {
        self.events.pop_front()
    }

    /// The latest time at which [`handle_tick`](Self::handle_tick) must be
    /// called again for a pending decision (`for`, `group_wait`) to be
    /// taken on time. `None` when nothing is pending; the runtime ticks
    /// regularly anyway because phi grows between heartbeats.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timeout
    }

    /// The nodes this node currently suspects, designated subjects first:
    /// what to gossip (encode with [`crate::encode_suspicions`], or use
    /// [`suspicion_report_value`](Self::suspicion_report_value)). Empty
    /// while isolated or degraded: such a node's view must not count
    /// towards anyone's quorum.
    pub fn suspicion_report(&self) -> &[String] {
        &self.report
    }

    /// [`suspicion_report`](Self::suspicion_report), encoded for the
    /// gossip key/value map.
    pub fn suspicion_report_value(&self) -> String {
        encode_suspicions(self.report.iter().map(String::as_str))
    }

    /// Whether this node suspects `node_id` (hysteresis state, after
    /// `for`).
    pub fn is_suspected(&self, node_id: &str) -> bool {
        self.subjects
            .get(node_id)
            .is_some_and(|s| matches!(s.local, Local::Suspected { .. }))
    }

    /// Whether this node considers itself cut off from the fleet.
    pub fn is_isolated(&self) -> bool {
        self.isolation.is_some()
    }

    /// Processes one tick: `now` on the caller's monotonic clock
    /// (non-decreasing across calls) and the current view.
    pub fn handle_tick(&mut self, now: Timestamp, view: &ClusterView) {
        self.self_generation = view.generation;
        self.sync_members(now, view);
        self.update_local(now, view.degraded);
        if !view.degraded {
            self.check_isolation(now);
        }
        let candidates = self.candidates();
        let agreements = self.agreements(now, view, &candidates);
        let confirmed = agreements.values().filter(|a| a.confirmed).count();
        if confirmed >= self.config.mass_failure_min.max(2) {
            self.mass_since.get_or_insert(now);
        } else if confirmed == 0 {
            self.mass_since = None;
        }
        let quiet = view.degraded || self.isolation.is_some();
        self.node_pages(now, &agreements, quiet);
        self.group_pages(now, &agreements, &candidates, quiet);
        self.build_report(view.degraded, &candidates);
        self.timeout = self.next_deadline(now, &agreements);
    }

    fn sync_members(&mut self, now: Timestamp, view: &ClusterView) {
        let mut seen = BTreeSet::new();
        for m in &view.members {
            if m.node_id == self.self_id || !seen.insert(m.node_id.as_str()) {
                continue;
            }
            let phi = sane_phi(m.phi);
            match self.subjects.get_mut(&m.node_id) {
                None => {
                    self.subjects.insert(
                        m.node_id.clone(),
                        Subject {
                            generation: m.generation,
                            heartbeat: m.heartbeat,
                            status: m.status,
                            phi,
                            local: Local::Trusted,
                            confirmed_since: None,
                            held: None,
                            restart_pending: false,
                        },
                    );
                }
                Some(s) => {
                    if m.generation > s.generation {
                        // A restart: the detector was reset, and the old
                        // incarnation's suspicion is void.
                        let was_departing = s.status.is_departing();
                        let was_confirmed = s.confirmed_since.is_some();
                        s.generation = m.generation;
                        s.local = Local::Trusted;
                        s.confirmed_since = None;
                        s.restart_pending = false;
                        if let Some(h) = &s.held {
                            let ev = AlertEvent {
                                incident_id: h.id.clone(),
                                event_id: event_id(&h.id, EventKind::Restarted, 0),
                                kind: EventKind::Restarted,
                                scope: Scope::Node,
                                subject: m.node_id.clone(),
                                nodes: vec![m.node_id.clone()],
                                generation: m.generation,
                                phi,
                                threshold: self.config.threshold,
                                cluster: self.config.cluster.clone(),
                                observer: self.self_id.clone(),
                                at: now,
                                started_at: h.started,
                            };
                            self.events.push_back(ev);
                        } else if !was_departing && !was_confirmed && self.mass_since.is_none() {
                            // Announce a quick restart nobody paged about.
                            // A confirmed subject's pager (or the group)
                            // announces it instead, and the nodes of a
                            // mass failure coming back are one group
                            // recovery, not a page each.
                            s.restart_pending = true;
                        }
                    }
                    s.heartbeat = m.heartbeat;
                    s.status = m.status;
                    s.phi = phi;
                }
            }
        }
        // Forget peers the membership forgot (garbage-collected or
        // removed): an open incident about them stays open at the
        // receiver for an operator to close.
        self.subjects.retain(|id, _| seen.contains(id.as_str()));
    }

    fn update_local(&mut self, now: Timestamp, degraded: bool) {
        let (threshold, resolve, for_) = (
            self.config.threshold,
            self.config.resolve_threshold,
            self.config.for_,
        );
        for s in self.subjects.values_mut() {
            if s.status.is_departing() {
                s.local = Local::Trusted;
                continue;
            }
            s.local = match s.local {
                // While this node is degraded its own silence explains the
                // peers' silence: raise nothing new.
                Local::Trusted | Local::Pending { .. } if degraded => Local::Trusted,
                Local::Trusted if s.phi >= threshold => {
                    if for_.is_zero() {
                        Local::Suspected { since: now }
                    } else {
                        Local::Pending { since: now }
                    }
                }
                Local::Trusted => Local::Trusted,
                Local::Pending { .. } if s.phi < threshold => Local::Trusted,
                Local::Pending { since } if now >= since + for_ => Local::Suspected { since: now },
                p @ Local::Pending { .. } => p,
                Local::Suspected { .. } if s.phi < resolve => Local::Trusted,
                sus @ Local::Suspected { .. } => sus,
            };
        }
    }

    fn check_isolation(&mut self, now: Timestamp) {
        let window = self.config.isolation_window;
        let mut silent = BTreeSet::new();
        let mut base = BTreeSet::new();
        let mut max_phi: f64 = 0.0;
        for (id, s) in &self.subjects {
            if s.status.is_departing() {
                continue;
            }
            match s.local {
                Local::Suspected { since } if since + window < now => {} // long silent
                Local::Suspected { .. } => {
                    silent.insert(id.clone());
                    base.insert(id.clone());
                    max_phi = max_phi.max(s.phi);
                }
                _ => {
                    base.insert(id.clone());
                }
            }
        }
        match &mut self.isolation {
            None => {
                if base.len() >= 2 && silent.len() * 2 > base.len() {
                    self.isolation_seq += 1;
                    let id = format!(
                        "inc_{}",
                        hex_digest(&[
                            b"partition",
                            self.config.cluster.as_bytes(),
                            self.self_id.as_bytes(),
                            &self.self_generation.to_be_bytes(),
                            &self.isolation_seq.to_be_bytes(),
                        ])
                    );
                    let nodes: Vec<String> = silent.iter().cloned().collect();
                    self.events.push_back(self.partition_event(
                        &id,
                        EventKind::Suspected,
                        nodes,
                        max_phi,
                        now,
                        now,
                    ));
                    self.isolation = Some(Isolation {
                        id,
                        started: now,
                        silent,
                        base,
                    });
                }
            }
            Some(iso) => {
                // Judge recovery against the peers of the episode, so the
                // silent ones do not age into "long silent" and end it.
                let present: Vec<&String> = iso
                    .base
                    .iter()
                    .filter(|id| {
                        self.subjects
                            .get(*id)
                            .is_some_and(|s| !s.status.is_departing())
                    })
                    .collect();
                let still_silent = iso
                    .silent
                    .iter()
                    .filter(|id| {
                        self.subjects.get(*id).is_some_and(|s| {
                            !s.status.is_departing() && matches!(s.local, Local::Suspected { .. })
                        })
                    })
                    .count();
                if still_silent * 2 <= present.len() {
                    let (id, started, nodes) = (
                        iso.id.clone(),
                        iso.started,
                        iso.silent.iter().cloned().collect(),
                    );
                    self.isolation = None;
                    self.events.push_back(self.partition_event(
                        &id,
                        EventKind::Recovered,
                        nodes,
                        max_phi,
                        now,
                        started,
                    ));
                }
            }
        }
    }

    fn partition_event(
        &self,
        id: &str,
        kind: EventKind,
        nodes: Vec<String>,
        phi: f64,
        now: Timestamp,
        started: Timestamp,
    ) -> AlertEvent {
        AlertEvent {
            incident_id: id.to_string(),
            event_id: event_id(id, kind, 0),
            kind,
            scope: Scope::Partition,
            subject: self.self_id.clone(),
            nodes,
            generation: self.self_generation,
            phi,
            threshold: self.config.threshold,
            cluster: self.config.cluster.clone(),
            observer: self.self_id.clone(),
            at: now,
            started_at: started,
        }
    }

    /// The live nodes as this node sees them: itself and every alive peer
    /// it does not suspect. Rendezvous ranks are computed over this set.
    fn candidates(&self) -> Vec<String> {
        let mut c: Vec<String> = self
            .subjects
            .iter()
            .filter(|(_, s)| {
                s.status == MemberStatus::Alive && !matches!(s.local, Local::Suspected { .. })
            })
            .map(|(id, _)| id.clone())
            .collect();
        c.push(self.self_id.clone());
        c
    }

    fn agreements(
        &mut self,
        now: Timestamp,
        view: &ClusterView,
        candidates: &[String],
    ) -> BTreeMap<String, Agreement> {
        // Only subjects someone suspects, that this node owes a page
        // about, or that restarted need rendezvous work: O(interesting × N)
        // instead of O(N²).
        let mut interesting: BTreeSet<&str> = BTreeSet::new();
        for (id, s) in &self.subjects {
            if s.local != Local::Trusted || s.held.is_some() || s.restart_pending {
                interesting.insert(id);
            }
        }
        for (observer, suspects) in &view.suspicions {
            if observer == &self.self_id {
                continue;
            }
            for s in suspects {
                if let Some((id, _)) = self.subjects.get_key_value(s.as_str()) {
                    interesting.insert(id);
                }
            }
        }
        let k = self.config.observers.max(1);
        let mut out = BTreeMap::new();
        for subject in interesting {
            let Some(s) = self.subjects.get(subject) else {
                continue;
            };
            let observers = designated_observers(subject, candidates.iter().map(String::as_str), k);
            let agreeing: Vec<&str> = observers
                .iter()
                .copied()
                .filter(|o| {
                    if *o == self.self_id {
                        matches!(s.local, Local::Suspected { .. })
                    } else {
                        view.suspicions.get(*o).is_some_and(|r| r.contains(subject))
                    }
                })
                .collect();
            let required = observers.len() / 2 + 1;
            let confirmed =
                !s.status.is_departing() && !observers.is_empty() && agreeing.len() >= required;
            out.insert(
                subject.to_string(),
                Agreement {
                    confirmed,
                    leader: confirmed && agreeing.first() == Some(&self.self_id.as_str()),
                    first: observers.first() == Some(&self.self_id.as_str()),
                },
            );
        }
        for (id, s) in self.subjects.iter_mut() {
            let confirmed = out.get(id).is_some_and(|a| a.confirmed);
            if !confirmed {
                s.confirmed_since = None;
            } else if s.confirmed_since.is_none() {
                s.confirmed_since = Some(now);
            }
        }
        out
    }

    fn node_pages(
        &mut self,
        now: Timestamp,
        agreements: &BTreeMap<String, Agreement>,
        quiet: bool,
    ) {
        let in_mass = self.mass_since.is_some();
        let (cluster, observer, threshold, group_wait) = (
            &self.config.cluster,
            &self.self_id,
            self.config.threshold,
            self.config.group_wait,
        );
        for (id, s) in self.subjects.iter_mut() {
            let phi = s.phi;
            let base =
                |kind: EventKind, inc: &str, started: Timestamp, generation: u64| AlertEvent {
                    incident_id: inc.to_string(),
                    event_id: event_id(inc, kind, 0),
                    kind,
                    scope: Scope::Node,
                    subject: id.clone(),
                    nodes: vec![id.clone()],
                    generation,
                    phi,
                    threshold,
                    cluster: cluster.clone(),
                    observer: observer.clone(),
                    at: now,
                    started_at: started,
                };
            // Resolutions are owed and never held back: seeing a peer
            // again is trustworthy even from a degraded or isolated node.
            if let Some(h) = &s.held {
                if s.local == Local::Trusted || s.status.is_departing() {
                    let ev = base(EventKind::Recovered, &h.id, h.started, h.generation);
                    self.events.push_back(ev);
                    s.held = None;
                }
                continue;
            }
            let agreement = agreements.get(id);
            if s.restart_pending && !quiet {
                s.restart_pending = false;
                if agreement.is_some_and(|a| a.first) {
                    let inc = format!(
                        "inc_{}",
                        hex_digest(&[
                            b"restart",
                            cluster.as_bytes(),
                            id.as_bytes(),
                            &s.generation.to_be_bytes(),
                        ])
                    );
                    let ev = base(EventKind::Restarted, &inc, now, s.generation);
                    self.events.push_back(ev);
                }
            }
            if quiet || s.status.is_departing() {
                continue;
            }
            let Some(a) = agreement else { continue };
            let Some(confirmed_since) = s.confirmed_since else {
                continue;
            };
            // Wait `group_wait` so nodes failing together are seen
            // together; in a mass failure the group leader pages for all.
            if !a.leader || now < confirmed_since + group_wait || in_mass {
                continue;
            }
            let inc = node_incident_id(cluster, id, s.generation, s.heartbeat);
            let started = match s.local {
                Local::Suspected { since } => since,
                _ => now,
            };
            let ev = base(EventKind::Suspected, &inc, started, s.generation);
            self.events.push_back(ev);
            s.held = Some(Held {
                id: inc,
                started,
                generation: s.generation,
            });
        }
    }

    fn group_pages(
        &mut self,
        now: Timestamp,
        agreements: &BTreeMap<String, Agreement>,
        candidates: &[String],
        quiet: bool,
    ) {
        let confirmed: BTreeSet<String> = agreements
            .iter()
            .filter(|(_, a)| a.confirmed)
            .map(|(id, _)| id.clone())
            .collect();
        let max_phi = |members: &BTreeSet<String>, subjects: &BTreeMap<String, Subject>| {
            members
                .iter()
                .filter_map(|m| subjects.get(m).map(|s| s.phi))
                .fold(0.0_f64, f64::max)
        };
        if let Some(mut g) = self.group.take() {
            // The holder owes the resolution: when no member is confirmed
            // or locally suspected any more.
            let active = g.members.iter().any(|m| {
                confirmed.contains(m)
                    || self
                        .subjects
                        .get(m)
                        .is_some_and(|s| matches!(s.local, Local::Suspected { .. }))
            });
            if !active {
                let ev = self.group_event(&g, EventKind::Recovered, 0, now);
                self.events.push_back(AlertEvent {
                    phi: max_phi(&g.members, &self.subjects),
                    ..ev
                });
                return;
            }
            if !quiet && self.mass_since.is_some() {
                let wait = self.config.group_wait;
                let new: Vec<String> = confirmed
                    .iter()
                    .filter(|id| !g.members.contains(*id))
                    .filter(|id| {
                        self.subjects
                            .get(*id)
                            .and_then(|s| s.confirmed_since)
                            .is_some_and(|t| now >= t + wait)
                    })
                    .cloned()
                    .collect();
                if !new.is_empty() {
                    g.members.extend(new);
                    g.seq += 1;
                    let ev = self.group_event(&g, EventKind::Suspected, g.seq, now);
                    self.events.push_back(AlertEvent {
                        phi: max_phi(&g.members, &self.subjects),
                        ..ev
                    });
                }
            }
            self.group = Some(g);
            return;
        }
        let Some(mass_since) = self.mass_since else {
            return;
        };
        if quiet || now < mass_since + self.config.group_wait {
            return;
        }
        let leader =
            designated_observers(GROUP_LEADER_KEY, candidates.iter().map(String::as_str), 1);
        if leader.first() != Some(&self.self_id.as_str()) {
            return;
        }
        let mut parts: Vec<&[u8]> = vec![b"group", self.config.cluster.as_bytes()];
        parts.extend(confirmed.iter().map(|m| m.as_bytes()));
        let id = format!("inc_{}", hex_digest(&parts));
        let g = Group {
            id,
            started: mass_since,
            members: confirmed,
            seq: 0,
        };
        let ev = self.group_event(&g, EventKind::Suspected, 0, now);
        self.events.push_back(AlertEvent {
            phi: max_phi(&g.members, &self.subjects),
            ..ev
        });
        self.group = Some(g);
    }

    fn group_event(&self, g: &Group, kind: EventKind, seq: u32, now: Timestamp) -> AlertEvent {
        AlertEvent {
            incident_id: g.id.clone(),
            event_id: event_id(&g.id, kind, seq),
            kind,
            scope: Scope::Group,
            subject: String::new(),
            nodes: g.members.iter().cloned().collect(),
            generation: 0,
            phi: 0.0,
            threshold: self.config.threshold,
            cluster: self.config.cluster.clone(),
            observer: self.self_id.clone(),
            at: now,
            started_at: g.started,
        }
    }

    fn build_report(&mut self, degraded: bool, candidates: &[String]) {
        self.report.clear();
        if degraded || self.isolation.is_some() {
            return;
        }
        let k = self.config.observers.max(1);
        let me = node_hash(&self.self_id);
        let mut first = Vec::new();
        let mut rest = Vec::new();
        for (id, s) in &self.subjects {
            if !matches!(s.local, Local::Suspected { .. }) {
                continue;
            }
            // Designated for it: listed first so a capped report keeps
            // what quorums need.
            let sh = node_hash(id);
            let mine = weight(me, sh);
            let better = candidates
                .iter()
                .filter(|c| *c != id && **c != self.self_id)
                .filter(|c| {
                    let w = weight(node_hash(c), sh);
                    w > mine || (w == mine && **c < self.self_id)
                })
                .count();
            if better < k {
                first.push(id.clone());
            } else {
                rest.push(id.clone());
            }
        }
        self.report = first;
        self.report.extend(rest);
    }

    fn next_deadline(
        &self,
        now: Timestamp,
        agreements: &BTreeMap<String, Agreement>,
    ) -> Option<Timestamp> {
        let mut deadlines = Vec::new();
        let wait = self.config.group_wait;
        for (id, s) in &self.subjects {
            if let Local::Pending { since } = s.local {
                deadlines.push(since + self.config.for_);
            }
            if let Some(t) = s.confirmed_since {
                if s.held.is_none() && agreements.get(id).is_some_and(|a| a.leader) {
                    deadlines.push(t + wait);
                }
                if self.group.is_some() {
                    deadlines.push(t + wait);
                }
            }
        }
        if let Some(t) = self.mass_since {
            deadlines.push(t + wait);
        }
        deadlines.into_iter().filter(|t| *t > now).min()
    }
}

#[cfg(test)]
mod tests;
