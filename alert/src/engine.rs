//! The alert engine: from fleet statuses to pages, once per incident
//! fleet-wide. Sans-IO: see [`AlertEngine`].

use crate::config::AlertConfig;
use phimon_detector::Timestamp;
use phimon_gossip::Status;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

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
    /// One node (`subject`).
    Node,
    /// The observer itself: it lost contact with most of its subjects at
    /// once and reports that instead of paging about them. It shares its
    /// incident id with the fleet's page about it.
    Partition,
    /// Several nodes that failed together (`nodes`), paged once.
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

/// One page to deliver. Every node that emits the same event of the same
/// incident produces the same `incident_id` and `event_id`, so receivers
/// deduplicate on `event_id` (the `webhook-id` header).
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
    /// The node the page is about: the subject (`Node`), this node
    /// (`Partition`), or empty (`Group`).
    pub subject: String,
    /// Every node concerned: `[subject]`, the subjects that went silent
    /// (`Partition`), or the group's members (`Group`), sorted.
    pub nodes: Vec<String>,
    /// The subject's generation (`Node`), this node's (`Partition`), 0
    /// (`Group`).
    pub generation: u64,
    /// The subject's phi at the pager when the event was emitted (the
    /// highest for groups and partitions).
    pub phi: f64,
    /// The suspicion threshold in force.
    pub threshold: f64,
    /// The cluster name.
    pub cluster: String,
    /// The node that emitted the event.
    pub observer: String,
    /// When the event was emitted (caller's monotonic clock).
    pub at: Timestamp,
    /// When the incident started on this node's clock.
    pub started_at: Timestamp,
    /// Why (`suspected` pages about a node; filled in by the sans-IO node,
    /// which holds the detectors).
    pub evidence: Option<Box<crate::Evidence>>,
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

/// The incident id of a node that is suspected: a function of what every
/// node agrees on — the cluster, the node, its generation and the version
/// of its signed record when the fleet lost it. The fleet's page about a
/// node and that node's own partition page compute the same id.
pub fn node_incident_id(cluster: &str, subject: &str, generation: u64, version: u64) -> String {
    let id = hex_digest(&[
        b"node",
        cluster.as_bytes(),
        subject.as_bytes(),
        &generation.to_be_bytes(),
        &version.to_be_bytes(),
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

/// What the engine is told about a node whose fleet status changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubjectUpdate<'a> {
    /// The node.
    pub node: &'a str,
    /// Its generation.
    pub generation: u64,
    /// The version of its record (names the incident).
    pub version: u64,
    /// Its fleet status now.
    pub status: Status,
    /// This node pages about it: the first of its observers, in ring
    /// order, that suspect it.
    pub pager: bool,
    /// This node's place among the node's observers in ring order (0 for
    /// the first); a pager ranked `r` waits `r * rank_delay` more.
    pub rank: usize,
    /// Its phi at this node, if this node observes it (0 otherwise).
    pub phi: f64,
}

/// An incident this node paged and so owes the resolution of.
#[derive(Debug, Clone)]
struct Held {
    id: String,
    started: Timestamp,
    generation: u64,
}

/// A node the fleet suspects, or that this node owes a resolution.
#[derive(Debug, Clone)]
struct Subject {
    generation: u64,
    version: u64,
    phi: f64,
    /// Fleet-suspected since.
    confirmed_since: Option<Timestamp>,
    pager: bool,
    rank: usize,
    held: Option<Held>,
}

impl Subject {
    /// When this node pages it, if it is the pager.
    fn due(&self, cfg: &AlertConfig) -> Option<Timestamp> {
        let wait = cfg.group_wait + cfg.rank_delay * u32::try_from(self.rank).unwrap_or(u32::MAX);
        self.confirmed_since.map(|t| t + wait)
    }
}

#[derive(Debug, Clone)]
struct Group {
    id: String,
    started: Timestamp,
    members: Vec<String>,
    seq: u32,
    /// The latest confirmation among its members: a node confirmed within
    /// `mass_failure_window` of it joins the group, a later one is paged
    /// alone.
    last: Timestamp,
}

/// Turns fleet statuses into pages: one per incident fleet-wide.
///
/// Sans-IO: it reads no clock, opens no socket and spawns nothing; every
/// decision is a function of its inputs, so it needs no seed.
///
/// Call order (the sans-IO node, phimon-node's `Node`, does this):
/// 1. [`handle_status`](Self::handle_status) whenever a node's fleet
///    status, or who pages about it, changes;
///    [`handle_restart`](Self::handle_restart) when a node restarted;
///    [`handle_removed`](Self::handle_removed) when it is forgotten;
///    [`handle_isolation`](Self::handle_isolation) when this node loses or
///    regains contact; [`set_degraded`](Self::set_degraded) and
///    [`set_group_leader`](Self::set_group_leader) as they change;
/// 2. [`handle_timeout`](Self::handle_timeout) at
///    [`poll_timeout`](Self::poll_timeout);
/// 3. [`poll_event`](Self::poll_event) until `None`, each event to the
///    outbox.
///
/// Semantics:
/// - A node is paged when the fleet suspects it (a majority of its
///   observers do), by the first of the agreeing observers in ring order
///   only, `group_wait` after the suspicion was confirmed. Its incident id
///   is [`node_incident_id`] of its generation and record version, so the
///   rare duplicate from a node whose view lags is deduplicated by
///   receivers.
/// - The node that paged owes the `recovered`: when the subject is no
///   longer suspected (alive again, leaving, left) or restarted (then a
///   `restarted` closes the incident).
/// - A restart with no open incident is announced once per
///   `restart_page_interval` per node, by its first observer.
/// - When this node is isolated it pages about itself (`Partition`, with
///   the incident id the fleet uses for it) and about nobody else.
/// - When at least `mass_failure_min` nodes are confirmed within
///   `mass_failure_window` of each other, the group leader pages once for
///   all of them instead; a node confirmed later is paged on its own.
/// - While degraded (this node stalled) no new page is sent.
#[derive(Debug)]
pub struct AlertEngine {
    config: AlertConfig,
    self_id: String,
    subjects: BTreeMap<String, Subject>,
    events: VecDeque<AlertEvent>,
    isolation: Option<(Held, Vec<String>)>,
    degraded: bool,
    group_leader: bool,
    group: Option<Group>,
    /// When each node's last `restarted` page went out.
    restarts: BTreeMap<String, Timestamp>,
    /// The latest time the engine was called with: deadlines at or before
    /// it were handled (or could not page yet, and wait for an input).
    last: Timestamp,
}

impl AlertEngine {
    /// An engine for the node `self_id`.
    pub fn new(config: AlertConfig, self_id: impl Into<String>) -> Self {
        AlertEngine {
            config,
            self_id: self_id.into(),
            subjects: BTreeMap::new(),
            events: VecDeque::new(),
            isolation: None,
            degraded: false,
            group_leader: false,
            group: None,
            restarts: BTreeMap::new(),
            last: Timestamp::ZERO,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &AlertConfig {
        &self.config
    }

    /// Replaces the settings (a live reload): open incidents are kept.
    pub fn set_config(&mut self, config: AlertConfig) {
        self.config = config;
    }

    /// The next event to deliver, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<AlertEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run next for a
    /// pending page to go out on time.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let wait = self.config.group_wait;
        self.subjects
            .values()
            .filter(|s| s.held.is_none())
            .filter_map(|s| match (s.pager, self.group_leader) {
                (true, _) => s.due(&self.config),
                (false, true) => s.confirmed_since.map(|t| t + wait),
                (false, false) => None,
            })
            .filter(|t| *t > self.last)
            .min()
    }

    /// Whether this node considers itself cut off from the fleet.
    pub fn is_isolated(&self) -> bool {
        self.isolation.is_some()
    }

    /// The nodes the fleet suspects, as this engine was told.
    pub fn suspects(&self) -> impl Iterator<Item = &str> + '_ {
        self.subjects
            .iter()
            .filter(|(_, s)| s.confirmed_since.is_some())
            .map(|(id, _)| id.as_str())
    }

    /// The open incidents this node paged and owes the resolution of:
    /// (subject, incident id).
    pub fn held(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.subjects
            .iter()
            .filter_map(|(id, s)| s.held.as_ref().map(|h| (id.as_str(), h.id.as_str())))
    }

    fn quiet(&self) -> bool {
        self.degraded || self.isolation.is_some()
    }

    /// This node stalled recently (or no longer): no new page while so.
    pub fn set_degraded(&mut self, degraded: bool) {
        self.degraded = degraded;
    }

    /// This node leads mass-failure pages (the fleet names one leader).
    pub fn set_group_leader(&mut self, leader: bool) {
        self.group_leader = leader;
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        kind: EventKind,
        scope: Scope,
        incident: &str,
        subject: &str,
        nodes: Vec<String>,
        generation: u64,
        phi: f64,
        (at, started): (Timestamp, Timestamp),
    ) -> AlertEvent {
        AlertEvent {
            incident_id: incident.to_owned(),
            event_id: event_id(incident, kind, 0),
            kind,
            scope,
            subject: subject.to_owned(),
            nodes,
            generation,
            phi: sane_phi(phi),
            threshold: self.config.threshold,
            cluster: self.config.cluster.clone(),
            observer: self.self_id.clone(),
            at,
            started_at: started,
            evidence: None,
        }
    }

    /// A node's fleet status changed, or who pages about it did.
    pub fn handle_status(&mut self, now: Timestamp, u: SubjectUpdate<'_>) {
        if u.node == self.self_id {
            return;
        }
        let s = self
            .subjects
            .entry(u.node.to_owned())
            .or_insert_with(|| Subject {
                generation: u.generation,
                version: u.version,
                phi: 0.0,
                confirmed_since: None,
                pager: false,
                rank: 0,
                held: None,
            });
        s.generation = s.generation.max(u.generation);
        s.pager = u.pager;
        s.rank = u.rank;
        s.phi = sane_phi(u.phi);
        if u.status == Status::Suspected {
            s.version = u.version;
            s.confirmed_since.get_or_insert(now);
        } else {
            s.confirmed_since = None;
            if let Some(h) = s.held.take() {
                let ev = self.event(
                    EventKind::Recovered,
                    Scope::Node,
                    &h.id,
                    u.node,
                    vec![u.node.to_owned()],
                    h.generation,
                    u.phi,
                    (now, h.started),
                );
                self.events.push_back(ev);
            }
        }
        self.handle_timeout(now);
        self.forget_idle(u.node);
    }

    /// A node came back in a new generation.
    pub fn handle_restart(
        &mut self,
        now: Timestamp,
        node: &str,
        new_generation: u64,
        announcer: bool,
    ) {
        if node == self.self_id {
            return;
        }
        let grouped = self
            .group
            .as_ref()
            .is_some_and(|g| g.members.iter().any(|m| m == node));
        let mut announce = announcer && !self.quiet() && !grouped;
        if let Some(s) = self.subjects.get_mut(node) {
            s.generation = new_generation;
            if s.confirmed_since.take().is_some() {
                // The fleet had confirmed it: its pager or the group
                // announces the comeback, not a page of its own.
                announce = false;
            }
            if let Some(h) = s.held.take() {
                let ev = self.event(
                    EventKind::Restarted,
                    Scope::Node,
                    &h.id,
                    node,
                    vec![node.to_owned()],
                    new_generation,
                    0.0,
                    (now, h.started),
                );
                self.events.push_back(ev);
                announce = false;
            }
        }
        let limit = self.config.restart_page_interval;
        if announce && self.restarts.get(node).is_none_or(|t| *t + limit <= now) {
            self.restarts.retain(|_, t| *t + limit > now);
            self.restarts.insert(node.to_owned(), now);
            let id = format!(
                "inc_{}",
                hex_digest(&[
                    b"restart",
                    self.config.cluster.as_bytes(),
                    node.as_bytes(),
                    &new_generation.to_be_bytes(),
                ])
            );
            let ev = self.event(
                EventKind::Restarted,
                Scope::Node,
                &id,
                node,
                vec![node.to_owned()],
                new_generation,
                0.0,
                (now, now),
            );
            self.events.push_back(ev);
        }
        self.forget_idle(node);
    }

    /// A node was forgotten: an open incident about it stays open at the
    /// receiver for an operator to close.
    pub fn handle_removed(&mut self, node: &str) {
        self.subjects.remove(node);
    }

    /// This node lost (`isolated`) or regained contact with most of its
    /// subjects. `generation` and `version` are this node's own, as its
    /// peers last confirmed them: the id the fleet gives an incident about
    /// this node.
    pub fn handle_isolation(
        &mut self,
        now: Timestamp,
        isolated: bool,
        (generation, version): (u64, u64),
        silent: Vec<String>,
        phi: f64,
    ) {
        match (&self.isolation, isolated) {
            (None, true) => {
                let id = node_incident_id(&self.config.cluster, &self.self_id, generation, version);
                let me = self.self_id.clone();
                let ev = self.event(
                    EventKind::Suspected,
                    Scope::Partition,
                    &id,
                    &me,
                    silent.clone(),
                    generation,
                    phi,
                    (now, now),
                );
                self.events.push_back(ev);
                self.isolation = Some((
                    Held {
                        id,
                        started: now,
                        generation,
                    },
                    silent,
                ));
            }
            (Some(_), false) => {
                if let Some((h, silent)) = self.isolation.take() {
                    let me = self.self_id.clone();
                    let ev = self.event(
                        EventKind::Recovered,
                        Scope::Partition,
                        &h.id,
                        &me,
                        silent,
                        h.generation,
                        phi,
                        (now, h.started),
                    );
                    self.events.push_back(ev);
                }
            }
            _ => {}
        }
    }

    /// Sends the pages that are due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.last = self.last.max(now);
        let confirmed: Vec<String> = self
            .subjects
            .iter()
            .filter(|(_, s)| s.confirmed_since.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        let burst = self.burst();
        let mass = burst.len() >= self.config.mass_failure_min.max(2);
        self.group_pages(now, &confirmed, &burst, mass);
        if self.quiet() {
            return;
        }
        let grouped = |id: &String| {
            (mass && burst.contains(id))
                || self.group.as_ref().is_some_and(|g| g.members.contains(id))
        };
        let due: Vec<String> = self
            .subjects
            .iter()
            .filter(|(_, s)| s.pager && s.held.is_none())
            .filter(|(_, s)| s.due(&self.config).is_some_and(|t| now >= t))
            .map(|(id, _)| id.clone())
            .filter(|id| !grouped(id))
            .collect();
        for id in due {
            let Some(s) = self.subjects.get(&id) else {
                continue;
            };
            let (generation, version, phi) = (s.generation, s.version, s.phi);
            let started = s.confirmed_since.unwrap_or(now);
            let inc = node_incident_id(&self.config.cluster, &id, generation, version);
            let ev = self.event(
                EventKind::Suspected,
                Scope::Node,
                &inc,
                &id,
                vec![id.clone()],
                generation,
                phi,
                (now, started),
            );
            self.events.push_back(ev);
            if let Some(s) = self.subjects.get_mut(&id) {
                s.held = Some(Held {
                    id: inc,
                    started,
                    generation,
                });
            }
        }
    }

    /// The nodes that fail together now: confirmed, not paged alone by
    /// this node, and confirmed within `mass_failure_window` of the latest
    /// of them
    /// (nodes confirmed long ago were paged alone, by this node or
    /// another, and do not make a later failure a mass one).
    fn burst(&self) -> Vec<String> {
        let open = || {
            self.subjects
                .iter()
                .filter(|(_, s)| s.held.is_none())
                .filter_map(|(id, s)| Some((id, s.confirmed_since?)))
        };
        let Some(latest) = open().map(|(_, t)| t).max() else {
            return Vec::new();
        };
        open()
            .filter(|(_, t)| *t + self.config.mass_failure_window >= latest)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn group_pages(&mut self, now: Timestamp, confirmed: &[String], burst: &[String], mass: bool) {
        let max_phi = |members: &[String], subjects: &BTreeMap<String, Subject>| {
            members
                .iter()
                .filter_map(|m| subjects.get(m).map(|s| s.phi))
                .fold(0.0_f64, f64::max)
        };
        if let Some(mut g) = self.group.take() {
            if confirmed.is_empty() || !confirmed.iter().any(|c| g.members.contains(c)) {
                let phi = max_phi(&g.members, &self.subjects);
                let mut ev = self.event(
                    EventKind::Recovered,
                    Scope::Group,
                    &g.id,
                    "",
                    g.members.clone(),
                    0,
                    phi,
                    (now, g.started),
                );
                ev.event_id = event_id(&g.id, EventKind::Recovered, 0);
                self.events.push_back(ev);
                return;
            }
            // Nodes confirmed while the group's failure still unfolds
            // join it; later ones are paged on their own.
            let joins = |id: &String| {
                self.subjects.get(id).is_some_and(|s| {
                    s.held.is_none()
                        && s.confirmed_since
                            .is_some_and(|t| t <= g.last + self.config.mass_failure_window)
                })
            };
            let new: Vec<String> = confirmed
                .iter()
                .filter(|c| !g.members.contains(c) && joins(c))
                .cloned()
                .collect();
            if !new.is_empty() && !self.quiet() {
                g.last = new
                    .iter()
                    .filter_map(|id| self.subjects.get(id).and_then(|s| s.confirmed_since))
                    .fold(g.last, Timestamp::max);
                g.members.extend(new);
                g.members.sort();
                g.seq += 1;
                let phi = max_phi(&g.members, &self.subjects);
                let mut ev = self.event(
                    EventKind::Suspected,
                    Scope::Group,
                    &g.id,
                    "",
                    g.members.clone(),
                    0,
                    phi,
                    (now, g.started),
                );
                ev.event_id = event_id(&g.id, EventKind::Suspected, g.seq);
                self.events.push_back(ev);
            }
            self.group = Some(g);
            return;
        }
        if !mass || self.quiet() || !self.group_leader {
            return;
        }
        let since = burst
            .iter()
            .filter_map(|c| self.subjects.get(c).and_then(|s| s.confirmed_since))
            .max()
            .unwrap_or(now);
        if now < since + self.config.group_wait {
            return;
        }
        let mut members = burst.to_vec();
        members.sort();
        let mut parts: Vec<&[u8]> = vec![b"group", self.config.cluster.as_bytes()];
        parts.extend(members.iter().map(|m| m.as_bytes()));
        let id = format!("inc_{}", hex_digest(&parts));
        let phi = max_phi(&members, &self.subjects);
        let ev = self.event(
            EventKind::Suspected,
            Scope::Group,
            &id,
            "",
            members.clone(),
            0,
            phi,
            (now, since),
        );
        self.events.push_back(ev);
        self.group = Some(Group {
            id,
            started: since,
            members,
            seq: 0,
            last: since,
        });
    }

    /// Drops a subject with nothing pending or held.
    fn forget_idle(&mut self, node: &str) {
        if self
            .subjects
            .get(node)
            .is_some_and(|s| s.confirmed_since.is_none() && s.held.is_none())
        {
            self.subjects.remove(node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Timestamp {
        Timestamp::from_micros(v * 1000)
    }

    fn update(node: &str, status: Status, pager: bool) -> SubjectUpdate<'_> {
        SubjectUpdate {
            node,
            generation: 7,
            version: 3,
            status,
            pager,
            rank: 0,
            phi: 9.0,
        }
    }

    fn engine() -> AlertEngine {
        AlertEngine::new(
            AlertConfig {
                cluster: "c".into(),
                ..AlertConfig::default()
            },
            "me",
        )
    }

    fn drain(e: &mut AlertEngine) -> Vec<AlertEvent> {
        std::iter::from_fn(|| e.poll_event()).collect()
    }

    #[test]
    fn the_pager_pages_once_after_group_wait_and_owes_the_recovery() {
        let mut e = engine();
        e.handle_status(ms(0), update("x", Status::Suspected, true));
        assert!(drain(&mut e).is_empty(), "waits group_wait");
        assert_eq!(e.poll_timeout(), Some(ms(1000)));
        e.handle_timeout(ms(1000));
        let ev = drain(&mut e);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, EventKind::Suspected);
        assert_eq!(ev[0].incident_id, node_incident_id("c", "x", 7, 3));
        assert_eq!(
            ev[0].event_id,
            event_id(&ev[0].incident_id, EventKind::Suspected, 0)
        );
        e.handle_timeout(ms(5000));
        assert!(drain(&mut e).is_empty(), "once");
        e.handle_status(ms(6000), update("x", Status::Alive, false));
        let ev = drain(&mut e);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, EventKind::Recovered);
        assert_eq!(ev[0].incident_id, node_incident_id("c", "x", 7, 3));
        assert_eq!(e.subjects.len(), 0, "nothing kept once resolved");
    }

    #[test]
    fn only_the_pager_pages_and_a_short_suspicion_pages_no_one() {
        let mut e = engine();
        e.handle_status(ms(0), update("x", Status::Suspected, false));
        e.handle_timeout(ms(5000));
        assert!(drain(&mut e).is_empty());
        let mut e = engine();
        e.handle_status(ms(0), update("x", Status::Suspected, true));
        e.handle_status(ms(500), update("x", Status::Alive, false));
        e.handle_timeout(ms(5000));
        assert!(drain(&mut e).is_empty());
    }

    #[test]
    fn restarts_close_incidents_and_are_announced_at_most_once_per_interval() {
        let mut e = engine();
        e.handle_status(ms(0), update("x", Status::Suspected, true));
        e.handle_timeout(ms(1000));
        assert_eq!(drain(&mut e).len(), 1);
        e.handle_restart(ms(2000), "x", 8, true);
        let ev = drain(&mut e);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, EventKind::Restarted);
        assert_eq!(ev[0].incident_id, node_incident_id("c", "x", 7, 3));
        // A crash loop: announced once per restart_page_interval.
        for (i, t) in [10_000u64, 20_000, 30_000].iter().enumerate() {
            e.handle_restart(ms(*t), "y", 2 + i as u64, true);
        }
        assert_eq!(drain(&mut e).len(), 1);
        e.handle_restart(ms(700_000), "y", 9, true);
        assert_eq!(drain(&mut e).len(), 1);
        // Only by the announcer.
        e.handle_restart(ms(800_000), "z", 2, false);
        assert!(drain(&mut e).is_empty());
    }

    #[test]
    fn isolation_pages_about_this_node_under_the_fleets_incident_id() {
        let mut e = engine();
        e.handle_isolation(ms(0), true, (5, 12), vec!["a".into(), "b".into()], 9.0);
        e.handle_status(ms(0), update("a", Status::Suspected, true));
        e.handle_timeout(ms(5000));
        let ev = drain(&mut e);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].scope, Scope::Partition);
        assert_eq!(ev[0].incident_id, node_incident_id("c", "me", 5, 12));
        e.handle_isolation(ms(9000), false, (5, 12), vec![], 0.0);
        let ev = drain(&mut e);
        assert_eq!(ev[0].kind, EventKind::Recovered);
        assert_eq!(ev[0].incident_id, node_incident_id("c", "me", 5, 12));
    }

    #[test]
    fn a_mass_failure_is_one_group_page_from_the_leader() {
        let mut e = engine();
        e.set_group_leader(true);
        for x in ["a", "b", "c"] {
            e.handle_status(ms(0), update(x, Status::Suspected, true));
        }
        e.handle_timeout(ms(1000));
        let ev = drain(&mut e);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].scope, Scope::Group);
        assert_eq!(ev[0].nodes, vec!["a", "b", "c"]);
        for x in ["a", "b", "c"] {
            e.handle_status(ms(3000), update(x, Status::Alive, false));
        }
        let ev = drain(&mut e);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, EventKind::Recovered);
    }

    #[test]
    fn failures_far_apart_are_paged_alone_even_while_others_stay_down() {
        let mut e = engine();
        e.set_group_leader(true);
        // Two nodes died an hour apart and stay down; this node paged
        // them. A third death later is its own incident, not a group.
        for (i, x) in ["a", "b", "c"].into_iter().enumerate() {
            let t = i as u64 * 3_600_000;
            e.handle_status(ms(t), update(x, Status::Suspected, true));
            e.handle_timeout(ms(t + 1000));
            let ev = drain(&mut e);
            assert_eq!(ev.len(), 1, "{x}: {ev:?}");
            assert_eq!((ev[0].scope, ev[0].subject.as_str()), (Scope::Node, x));
        }
        // The leader of a group does not fold a later death into it.
        let mut e = engine();
        e.set_group_leader(true);
        for x in ["a", "b", "c"] {
            e.handle_status(ms(0), update(x, Status::Suspected, false));
        }
        e.handle_timeout(ms(1000));
        assert_eq!(drain(&mut e)[0].scope, Scope::Group);
        // One confirmed within the window of the group's last joins it.
        e.handle_status(ms(1000), update("e", Status::Suspected, true));
        e.handle_timeout(ms(2000));
        let ev = drain(&mut e);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].scope, Scope::Group);
        assert_eq!(ev[0].nodes, vec!["a", "b", "c", "e"]);
        e.handle_status(ms(60_000), update("d", Status::Suspected, true));
        e.handle_timeout(ms(61_000));
        let ev = drain(&mut e);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!((ev[0].scope, ev[0].subject.as_str()), (Scope::Node, "d"));
    }

    #[test]
    fn a_degraded_node_pages_no_one() {
        let mut e = engine();
        e.set_degraded(true);
        e.handle_status(ms(0), update("x", Status::Suspected, true));
        e.handle_timeout(ms(5000));
        assert!(drain(&mut e).is_empty());
        e.set_degraded(false);
        e.handle_timeout(ms(6000));
        assert_eq!(drain(&mut e).len(), 1);
    }
}
