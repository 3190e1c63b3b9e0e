//! The sans-IO phimon node: the protocol core ([`Gossip`]) and the alert
//! engine ([`AlertEngine`]) composed into one state machine, [`Node`],
//! that the tokio runtime and the simulator both drive.
//!
//! Frames and the clock go in (`handle_*`); frames to send, events and
//! pages come out (`poll_*`), and [`Node::poll_timeout`] says when to call
//! again. The node reads no clock, opens no socket and spawns nothing.
//! What it leaves to others: the transport (phimon-transport), the
//! durable outbox and webhook delivery (phimon-pager), metrics and HTTP
//! (phimon-exporter), and detecting its own stalls (the runtime, which
//! reports them with [`Node::observer_stalled`]).

pub use phimon_alert::{
    AlertConfig, AlertEngine, AlertEvent, EVIDENCE_VERSION, EventKind, Evidence, LocalHealth,
    MAX_INTERVALS, ObserverEvidence, PhiSample, Scope, SubjectUpdate, event_id, node_incident_id,
};
use phimon_detector::Fit;

use phimon_detector::Timestamp;
use phimon_gossip::{
    Authority, Event, Gossip, GossipConfig, GossipError, NodeId, RingKey, Signer, Status, Transmit,
};
use std::collections::{HashSet, VecDeque};

/// Settings of a [`Node`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeConfig {
    /// The protocol core's.
    pub gossip: GossipConfig,
    /// The alert engine's.
    pub alert: AlertConfig,
}

/// Ring position of the mass-failure group leader: the first live node
/// after it leads (a name no node id can have).
fn group_leader_key() -> RingKey {
    RingKey::of(&NodeId::from("phimon:group-leader"))
}

/// One phimon node, sans IO. See the [crate docs](crate).
///
/// Call order, all with the caller's monotonic `now`:
/// 1. [`new`](Self::new) once.
/// 2. Every received frame: [`handle_datagram`](Self::handle_datagram) or
///    [`handle_message`](Self::handle_message), with the sender's id from
///    its certificate and the arrival time. At
///    [`poll_timeout`](Self::poll_timeout):
///    [`handle_timeout`](Self::handle_timeout). After an own stall:
///    [`observer_stalled`](Self::observer_stalled) before anything else.
/// 3. After each: drain [`poll_transmit`](Self::poll_transmit) (to the
///    transport), [`poll_alert`](Self::poll_alert) (to the outbox) and
///    [`poll_event`](Self::poll_event) (logs, metrics), then re-arm the
///    one timer.
pub struct Node {
    gossip: Gossip,
    engine: AlertEngine,
    events: VecDeque<Event>,
    /// Pages from the engine, with their evidence.
    alerts: VecDeque<AlertEvent>,
    /// [`Gossip::table_changes`] when pagers were last refreshed.
    seen_changes: u64,
    /// Suspects (and their generation) this node is the pager of and has
    /// checked its own reachability for since they were confirmed.
    checked: HashSet<(NodeId, u64)>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("gossip", &self.gossip)
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node `id` reachable at `address`, in `generation`; see
    /// [`Gossip::new`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: NodeConfig,
        id: NodeId,
        address: impl Into<String>,
        generation: u64,
        signer: Box<dyn Signer>,
        authority: Box<dyn Authority>,
        seed: u64,
        now: Timestamp,
    ) -> Result<Node, GossipError> {
        let gossip = Gossip::new(
            config.gossip,
            id,
            address,
            generation,
            signer,
            authority,
            seed,
            now,
        )?;
        Ok(Node::from_gossip(gossip, config.alert, now))
    }

    /// A node around an existing core (a simulator starting from a
    /// snapshot).
    pub fn from_gossip(gossip: Gossip, alert: AlertConfig, now: Timestamp) -> Node {
        let engine = AlertEngine::new(alert, gossip.id().as_str());
        let mut n = Node {
            gossip,
            engine,
            events: VecDeque::new(),
            alerts: VecDeque::new(),
            seen_changes: u64::MAX,
            checked: HashSet::new(),
        };
        n.after(now);
        n
    }

    /// A received datagram.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        from: &NodeId,
        bytes: &[u8],
    ) -> Result<(), GossipError> {
        let r = self.gossip.handle_datagram(now, from, bytes);
        self.after(now);
        r
    }

    /// A received message.
    pub fn handle_message(
        &mut self,
        now: Timestamp,
        from: &NodeId,
        bytes: &[u8],
    ) -> Result<(), GossipError> {
        let r = self.gossip.handle_message(now, from, bytes);
        self.after(now);
        r
    }

    /// A decoded frame (simulators).
    pub fn handle_frame(
        &mut self,
        now: Timestamp,
        from: &NodeId,
        frame: phimon_gossip::wire::Frame,
    ) -> Result<(), GossipError> {
        let r = self.gossip.handle_frame(now, from, frame);
        self.after(now);
        r
    }

    /// The timer fired.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.gossip.handle_timeout(now);
        self.after(now);
    }

    /// This node itself was stalled until `to`: call first on the wake-up
    /// that noticed it, before any frame received meanwhile.
    pub fn observer_stalled(&mut self, to: Timestamp) {
        self.gossip.observer_stalled(to);
        self.engine.set_degraded(true);
    }

    /// Publishes a key/value in this node's record.
    pub fn set_kv(&mut self, now: Timestamp, key: &str, value: &str) -> Result<(), GossipError> {
        self.gossip.set_kv(key, value)?;
        self.gossip.handle_timeout(now);
        self.after(now);
        Ok(())
    }

    /// Re-signs this node's record with the signer's current key (see
    /// [`Gossip::resign`]).
    pub fn resign(&mut self, now: Timestamp) {
        self.gossip.resign();
        self.gossip.handle_timeout(now);
        self.after(now);
    }

    /// Starts leaving gracefully.
    pub fn leave(&mut self, now: Timestamp) {
        self.gossip.leave(now);
        self.after(now);
    }

    /// `left` was announced and nothing is left to send.
    pub fn leave_complete(&self) -> bool {
        self.gossip.leave_complete()
    }

    /// The next frame to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.gossip.poll_transmit()
    }

    /// The next page to make durable and deliver. A `suspected` page
    /// about a node carries its [`Evidence`].
    #[must_use]
    pub fn poll_alert(&mut self) -> Option<AlertEvent> {
        self.alerts.pop_front()
    }

    /// The next protocol event (for logs, metrics, recordings).
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match (self.gossip.poll_timeout(), self.engine.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The protocol core (members, subjects, statistics).
    pub fn gossip(&self) -> &Gossip {
        &self.gossip
    }

    /// The alert engine (open incidents, isolation).
    pub fn engine(&self) -> &AlertEngine {
        &self.engine
    }

    /// New settings (a live reload): the detectors' and alerting's.
    /// Detector windows and open incidents are kept; see
    /// [`Gossip::reconfigure`] for what can change.
    pub fn reconfigure(&mut self, config: &NodeConfig, now: Timestamp) {
        self.gossip.reconfigure(&config.gossip, now);
        self.engine.set_config(config.alert.clone());
        self.after(now);
    }

    /// Why this node suspects `subject`, as of `now`, if it observes it:
    /// what a page about it carries, and `GET /v1/peers/{id}` serves.
    pub fn evidence(&self, subject: &NodeId, now: Timestamp) -> Option<Evidence> {
        let m = self.gossip.member(subject)?;
        let o = m.observed()?;
        let d = o.detector();
        let ms = |us: f64| us / 1000.0;
        let (model, fit): (&str, Vec<(String, f64)>) = match d.fit() {
            Fit::Adaptive {
                expected_micros,
                jitter_micros,
                late_from_micros,
                late_fraction,
                late_events,
                late_mean_excess_micros,
                loss_after_delivered,
                loss_after_lost,
            } => (
                "adaptive",
                vec![
                    ("expected_interval_ms".into(), ms(expected_micros)),
                    ("jitter_ms".into(), ms(jitter_micros)),
                    ("late_from_ms".into(), ms(late_from_micros)),
                    ("late_fraction".into(), late_fraction),
                    ("late_events".into(), late_events),
                    ("late_mean_excess_ms".into(), ms(late_mean_excess_micros)),
                    ("loss_after_delivered".into(), loss_after_delivered),
                    ("loss_after_lost".into(), loss_after_lost),
                ],
            ),
            Fit::Normal {
                mean_micros,
                std_dev_micros,
            } => (
                "normal",
                vec![
                    ("mean_ms".into(), ms(mean_micros)),
                    ("std_dev_ms".into(), ms(std_dev_micros)),
                ],
            ),
            Fit::Exponential { mean_micros } => {
                ("exponential", vec![("mean_ms".into(), ms(mean_micros))])
            }
            _ => ("unknown", Vec::new()),
        };
        let counts = o.counts();
        let (subjects, subjects_suspected) = self
            .gossip
            .subjects()
            .fold((0, 0), |(n, s), x| (n + 1, s + usize::from(x.suspected())));
        Some(Evidence {
            version: EVIDENCE_VERSION,
            intervals_ms: d
                .recent_intervals(MAX_INTERVALS)
                .map(|i| i.as_secs_f64() * 1000.0)
                .collect(),
            phi_history: o
                .phi_history()
                .map(|(t, phi)| PhiSample {
                    t_s: -(now - t).as_secs_f64(),
                    phi,
                })
                .collect(),
            silence_ms: o
                .last_arrival()
                .map_or(0.0, |l| (now - l).as_secs_f64() * 1000.0),
            model: model.to_owned(),
            fit,
            heartbeats_lost: counts.lost,
            heartbeats_received: counts.received,
            observers: m
                .observers()
                .into_iter()
                .map(|v| ObserverEvidence {
                    node_id: v.observer.to_string(),
                    suspected: v.suspected,
                    phi: v.phi,
                })
                .collect(),
            local_health: LocalHealth {
                degraded: self.gossip.is_degraded(now),
                isolated: self.gossip.is_isolated(),
                subjects,
                subjects_suspected,
            },
        })
    }

    /// Feeds what the core reported to the engine, in order.
    fn after(&mut self, now: Timestamp) {
        let me = self.gossip.id().clone();
        let mut ring_changed = false;
        while let Some(ev) = self.gossip.poll_event() {
            match &ev {
                Event::Status { node, .. } => {
                    ring_changed = true;
                    self.update_subject(now, node, &me);
                }
                Event::Restarted {
                    node,
                    new_generation,
                    ..
                } => {
                    let announcer = self
                        .gossip
                        .member(node)
                        .and_then(|m| m.first_observer().cloned())
                        .is_some_and(|o| o == me);
                    self.engine
                        .handle_restart(now, node.as_str(), *new_generation, announcer);
                }
                Event::Removed { node } => self.engine.handle_removed(node.as_str()),
                Event::Isolation {
                    isolated,
                    generation,
                    version,
                } => {
                    let silent: Vec<String> = self
                        .gossip
                        .subjects()
                        .filter(|s| s.suspected())
                        .map(|s| s.node_id().to_string())
                        .collect();
                    let phi = self
                        .gossip
                        .subjects()
                        .map(|s| s.phi(now))
                        .fold(0.0_f64, f64::max);
                    self.engine.handle_isolation(
                        now,
                        *isolated,
                        (*generation, *version),
                        silent,
                        phi,
                    );
                }
                Event::Observing { .. } => ring_changed = true,
                _ => {}
            }
            self.events.push_back(ev);
        }
        let changes = self.gossip.table_changes();
        if ring_changed || changes != self.seen_changes {
            self.seen_changes = changes;
            // Who pages about a suspect follows the observers' verdicts
            // and the ring: refresh it for every suspect (a handful), and
            // who leads group pages.
            let suspects: Vec<NodeId> = self.engine.suspects().map(NodeId::from).collect();
            for s in suspects {
                self.update_subject(now, &s, &me);
            }
            let leader = self.group_leader();
            self.engine.set_group_leader(leader == Some(me));
        }
        // No page while this node does not know yet whether it, rather
        // than the peers it suspects, lost contact.
        self.engine
            .set_degraded(self.gossip.is_degraded(now) || self.gossip.checking_reachability());
        self.engine.handle_timeout(now);
        while let Some(mut a) = self.engine.poll_event() {
            if a.kind == EventKind::Suspected && a.scope == Scope::Node {
                a.evidence = self
                    .evidence(&NodeId::from(a.subject.as_str()), now)
                    .map(Box::new);
            }
            self.alerts.push_back(a);
        }
    }

    fn update_subject(&mut self, now: Timestamp, node: &NodeId, me: &NodeId) {
        let Some(m) = self.gossip.member(node) else {
            return;
        };
        let phi = m.observed().map_or(0.0, |o| o.phi(now));
        let pager = m.pager() == Some(me);
        let rank = m
            .observers()
            .iter()
            .position(|o| o.observer == me)
            .unwrap_or(0);
        let suspected = m.status() == Status::Suspected;
        let generation = m.generation();
        let key = (node.clone(), generation);
        if pager && suspected {
            // Before paging about a suspect, this node checks that it can
            // still reach most of the fleet: in a split, the minority's
            // observers can be a subject's quorum in their own view, and
            // only the check tells them the silence is theirs. The page
            // waits for the check (see `after`).
            if self.checked.insert(key) {
                self.gossip.check_reachability(now);
            }
        } else if !suspected {
            self.checked.retain(|(n, _)| n != node);
        }
        let Some(m) = self.gossip.member(node) else {
            return;
        };
        let update = SubjectUpdate {
            node: node.as_str(),
            generation,
            version: m.version(),
            status: m.status(),
            pager,
            rank,
            phi,
        };
        self.engine.handle_status(now, update);
    }

    /// The first live member after the group-leader position on the ring.
    fn group_leader(&self) -> Option<NodeId> {
        let key = group_leader_key();
        let live = |m: &phimon_gossip::Member<'_>| {
            matches!(m.status(), Status::Alive | Status::Unknown) || m.is_self()
        };
        let members: Vec<_> = self.gossip.members().collect();
        let start = members.partition_point(|m| RingKey::of(m.node_id()) < key);
        members[start..]
            .iter()
            .chain(members[..start].iter())
            .find(|m| live(m))
            .map(|m| m.node_id().clone())
    }
}
