//! Direct monitoring: the subjects this node observes, their detectors fed
//! only by the subjects' own heartbeats, and this node's verdict on each.

use crate::NodeId;
use crate::key::RingKey;
use crate::record::Verdict;
use crate::wire::Heartbeat;
use phimon_detector::{DetectorConfig, HeartbeatCounts, PeerDetector, Timestamp};
use std::time::Duration;

/// The settings of local judgement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Judgement {
    pub(crate) detector: DetectorConfig,
    pub(crate) threshold: f64,
    pub(crate) resolve_threshold: f64,
    /// How long phi must stay at or above the threshold before the
    /// subject is suspected (`alert.for`).
    pub(crate) for_: Duration,
    /// How long after its own stall this node raises no new suspicion.
    pub(crate) hold: Duration,
}

/// This node's hysteretic judgement of one subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// phi below the threshold (or back below `resolve_threshold`).
    Trusted,
    /// phi at or above the threshold since `since`, for less than `for`.
    Pending {
        /// When phi crossed.
        since: Timestamp,
    },
    /// Suspected since `since`, until a heartbeat brings phi below
    /// `resolve_threshold`.
    Suspected {
        /// When the suspicion began.
        since: Timestamp,
    },
}

/// One subject: a node whose heartbeats this node receives.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub(crate) id: NodeId,
    pub(crate) key: RingKey,
    /// The generation judged: the record's, or a newer one announced by a
    /// heartbeat before its record arrived.
    pub(crate) generation: u64,
    pub(crate) detector: PeerDetector,
    /// A heartbeat of `generation` arrived (before that the detector runs
    /// on the prior, from when monitoring began, and no verdict is given).
    pub(crate) heard: bool,
    pub(crate) local: Local,
    /// When this node began observing it (this generation).
    pub(crate) since: Timestamp,
    /// When phi must next be compared with the thresholds.
    pub(crate) deadline: Option<Timestamp>,
    /// Heartbeat counts of earlier generations (the detector counts the
    /// current one).
    carried: HeartbeatCounts,
    /// phi when the published verdict was reached.
    verdict_phi: f64,
    /// phi sampled once per interval, oldest first once full (evidence).
    history: PhiHistory,
}

/// How many phi samples a subject keeps: a minute at 1 s heartbeats.
pub const PHI_HISTORY: usize = 64;

/// A ring of (time, phi) samples.
#[derive(Debug, Clone)]
pub(crate) struct PhiHistory {
    samples: Vec<(Timestamp, f32)>,
    head: usize,
}

impl PhiHistory {
    fn new() -> Self {
        PhiHistory {
            samples: Vec::new(),
            head: 0,
        }
    }

    fn push(&mut self, at: Timestamp, phi: f64) {
        let v = (at, phi.min(f64::from(f32::MAX)) as f32);
        if self.samples.len() < PHI_HISTORY {
            self.samples.push(v);
        } else {
            self.samples[self.head] = v;
            self.head = (self.head + 1) % PHI_HISTORY;
        }
    }

    /// The samples, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Timestamp, f64)> + '_ {
        let (a, b) = self.samples.split_at(self.head);
        b.iter().chain(a.iter()).map(|&(t, p)| (t, f64::from(p)))
    }
}

/// What a heartbeat was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// Recorded.
    Recorded,
    /// Recorded, and it announces a generation newer than the subject's
    /// record: the node restarted.
    Restarted,
    /// From a node this node does not observe.
    Unexpected,
    /// Of an older generation than the one judged.
    Stale,
    /// A repeated or reordered seq.
    Reordered,
}

/// A verdict that changed: this node's own record must say so.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VerdictChange {
    pub(crate) subject: NodeId,
    pub(crate) generation: u64,
    pub(crate) suspected: bool,
    pub(crate) phi: f64,
}

impl Subject {
    fn new(id: NodeId, key: RingKey, generation: u64, cfg: &Judgement, now: Timestamp) -> Self {
        // A hand-over starts from the configured-interval prior as if a
        // heartbeat had just arrived: phi rises normally if none ever
        // comes (a node that died meanwhile is still detected), and not
        // before the node has had time to learn of its new observer.
        Subject {
            id,
            key,
            generation,
            detector: PeerDetector::started_at(&cfg.detector, now),
            heard: false,
            local: Local::Trusted,
            since: now,
            deadline: None,
            carried: HeartbeatCounts::default(),
            verdict_phi: 0.0,
            history: PhiHistory::new(),
        }
    }

    fn restart(&mut self, generation: u64, cfg: &Judgement, now: Timestamp) {
        let carried = self.counts();
        *self = Subject::new(self.id.clone(), self.key, generation, cfg, now);
        self.carried = carried;
    }

    /// The detector rebuilt with other settings, keeping its window: the
    /// intervals it holds are replayed into a fresh detector, ending at
    /// the same last arrival.
    fn reconfigure(&mut self, cfg: &Judgement) {
        let Some(last) = self.detector.last_arrival() else {
            self.detector = PeerDetector::new(&cfg.detector);
            return;
        };
        let carried = self.counts();
        let intervals: Vec<u64> = self
            .detector
            .recent_intervals(usize::MAX)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .collect();
        let span: u64 = intervals.iter().sum();
        let mut t = last.as_micros().saturating_sub(span);
        let mut d = PeerDetector::new(&cfg.detector);
        if self.heard {
            d.record(Timestamp::from_micros(t));
            for i in intervals {
                t = t.saturating_add(i);
                d.record(Timestamp::from_micros(t));
            }
        } else {
            d.start_at(last);
        }
        self.detector = d;
        self.carried = carried;
    }

    /// phi once per interval over the last minute or so, oldest first.
    pub(crate) fn history(&self) -> impl Iterator<Item = (Timestamp, f64)> + '_ {
        self.history.iter()
    }

    /// phi when the published verdict was reached.
    pub(crate) fn verdict_phi(&self) -> f64 {
        self.verdict_phi
    }

    /// Heartbeats received, lost, reordered and duplicated, all
    /// generations.
    pub(crate) fn counts(&self) -> HeartbeatCounts {
        let c = self.detector.counts();
        HeartbeatCounts {
            received: self.carried.received + c.received,
            lost: self.carried.lost + c.lost,
            reordered: self.carried.reordered + c.reordered,
            duplicate: self.carried.duplicate + c.duplicate,
        }
    }

    /// The verdict this node publishes, if any.
    pub(crate) fn verdict(&self) -> Option<bool> {
        match self.local {
            Local::Suspected { .. } => Some(true),
            _ if self.heard => Some(false),
            _ => None,
        }
    }

    pub(crate) fn phi(&self, now: Timestamp) -> f64 {
        self.detector.phi(now)
    }
}

/// The subjects of one node, sorted by ring position.
#[derive(Debug)]
pub(crate) struct Monitor {
    pub(crate) subjects: Vec<Subject>,
    cfg: Judgement,
    /// No new suspicion before this time: this node itself stalled.
    degraded_until: Option<Timestamp>,
    /// Some subject's published verdict may have changed.
    changed: bool,
}

impl Monitor {
    pub(crate) fn new(cfg: Judgement) -> Monitor {
        Monitor {
            subjects: Vec::new(),
            cfg,
            degraded_until: None,
            changed: false,
        }
    }

    pub(crate) fn get(&self, key: RingKey) -> Option<&Subject> {
        self.subjects
            .binary_search_by_key(&key, |s| s.key)
            .ok()
            .map(|i| &self.subjects[i])
    }

    /// Whether this node stalled recently (no new suspicion, no pages).
    pub(crate) fn degraded(&self, now: Timestamp) -> bool {
        self.degraded_until.is_some_and(|t| now < t)
    }

    /// Makes `wanted` (ring position, id, record generation) the subjects:
    /// detectors of kept subjects are kept, new ones start from the prior.
    /// Returns the ids added and removed.
    pub(crate) fn set_subjects(
        &mut self,
        mut wanted: Vec<(RingKey, NodeId, u64)>,
        now: Timestamp,
    ) -> (Vec<NodeId>, Vec<NodeId>) {
        wanted.sort_by_key(|w| w.0);
        let old = std::mem::take(&mut self.subjects);
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        let mut old = old.into_iter().peekable();
        for (key, id, generation) in wanted {
            while old.peek().is_some_and(|s| s.key < key) {
                if let Some(s) = old.next() {
                    removed.push(s.id);
                }
            }
            let mut s = match old.next_if(|s| s.key == key) {
                Some(s) => s,
                None => {
                    added.push(id.clone());
                    Subject::new(id, key, generation, &self.cfg, now)
                }
            };
            if generation > s.generation {
                s.restart(generation, &self.cfg, now);
                self.changed = true;
            }
            self.subjects.push(s);
        }
        removed.extend(old.map(|s| s.id));
        self.changed |= !added.is_empty() || !removed.is_empty();
        for i in 0..self.subjects.len() {
            self.reschedule(i, now);
        }
        (added, removed)
    }

    /// Records a heartbeat from the node at `key`, received at `at`.
    pub(crate) fn heartbeat(&mut self, key: RingKey, hb: &Heartbeat, at: Timestamp) -> Arrival {
        let Ok(i) = self.subjects.binary_search_by_key(&key, |s| s.key) else {
            return Arrival::Unexpected;
        };
        let cfg = &self.cfg;
        let s = &mut self.subjects[i];
        let mut outcome = Arrival::Recorded;
        if hb.generation < s.generation {
            return Arrival::Stale;
        }
        if hb.generation > s.generation {
            s.restart(hb.generation, cfg, at);
            outcome = Arrival::Restarted;
            self.changed = true;
        }
        if !s.detector.record_seq(at, hb.seq) {
            return Arrival::Reordered;
        }
        if !s.heard {
            s.heard = true;
            s.verdict_phi = s.detector.phi(at);
            self.changed = true;
        }
        self.reschedule(i, at);
        outcome
    }

    /// This node was stalled from `from` to `to`: silences are measured
    /// from `to`, and no new suspicion is raised until `to + hold`.
    pub(crate) fn observer_stalled(&mut self, to: Timestamp) {
        self.degraded_until = Some(to + self.cfg.hold);
        for s in &mut self.subjects {
            s.detector.observer_resumed(to);
        }
        for i in 0..self.subjects.len() {
            self.reschedule(i, to);
        }
    }

    /// Compares phi with the thresholds for every subject that is due
    /// (or every subject when `all`), and returns the verdicts that
    /// changed.
    pub(crate) fn judge(&mut self, now: Timestamp, all: bool) -> Vec<VerdictChange> {
        let mut changes = Vec::new();
        let degraded = self.degraded(now);
        for i in 0..self.subjects.len() {
            let s = &self.subjects[i];
            if !all && s.deadline.is_none_or(|d| d > now) {
                continue;
            }
            let before = s.verdict();
            let phi = s.phi(now);
            let (threshold, resolve) = (self.cfg.threshold, self.cfg.resolve_threshold);
            let local = match s.local {
                // While this node is degraded its own stall explains the
                // silence: raise nothing new.
                Local::Trusted | Local::Pending { .. } if degraded => Local::Trusted,
                Local::Trusted if phi >= threshold && self.cfg.for_.is_zero() => {
                    Local::Suspected { since: now }
                }
                Local::Trusted if phi >= threshold => Local::Pending { since: now },
                Local::Pending { since } if phi >= threshold && now >= since + self.cfg.for_ => {
                    Local::Suspected { since: now }
                }
                l @ Local::Pending { .. } if phi >= threshold => l,
                Local::Pending { .. } => Local::Trusted,
                Local::Suspected { .. } if phi < resolve => Local::Trusted,
                l => l,
            };
            let s = &mut self.subjects[i];
            s.local = local;
            let after = s.verdict();
            if after != before {
                self.changed = true;
                s.verdict_phi = phi;
                if let Some(suspected) = after {
                    changes.push(VerdictChange {
                        subject: s.id.clone(),
                        generation: s.generation,
                        suspected,
                        phi,
                    });
                }
            }
            self.reschedule(i, now);
        }
        changes
    }

    /// Sets subject `i`'s next deadline: when phi will reach the threshold
    /// (not before this node's degradation ends).
    fn reschedule(&mut self, i: usize, now: Timestamp) {
        let s = &mut self.subjects[i];
        s.deadline = match s.local {
            Local::Suspected { .. } => None,
            Local::Pending { since } => Some(since + self.cfg.for_),
            Local::Trusted => s.detector.when_phi_reaches(self.cfg.threshold).map(|t| {
                let t = t.max(now);
                match self.degraded_until {
                    Some(d) if d > t => d,
                    _ => t,
                }
            }),
        };
        // A heartbeat while suspected: judge at once (it may resolve).
        if matches!(s.local, Local::Suspected { .. })
            && s.detector.phi(now) < self.cfg.resolve_threshold
        {
            s.deadline = Some(now);
        }
    }

    /// Samples every subject's phi (once per interval: the evidence's
    /// phi history).
    pub(crate) fn sample(&mut self, now: Timestamp) {
        for s in &mut self.subjects {
            let phi = s.phi(now);
            s.history.push(now, phi);
        }
    }

    /// New settings of local judgement: thresholds apply at once, and
    /// detectors are rebuilt with their windows kept when the detector
    /// settings changed.
    pub(crate) fn set_judgement(&mut self, cfg: Judgement, now: Timestamp) {
        let rebuild = cfg.detector != self.cfg.detector;
        self.cfg = cfg;
        if rebuild {
            for s in &mut self.subjects {
                s.reconfigure(&self.cfg);
            }
        }
        for i in 0..self.subjects.len() {
            self.reschedule(i, now);
        }
    }

    /// Whether a published verdict may have changed since the last call.
    pub(crate) fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Treats every subject as already heard from (a simulator's settled
    /// start, whose records already carry alive verdicts): detectors
    /// still start from the prior.
    pub(crate) fn assume_heard(&mut self) {
        for s in &mut self.subjects {
            s.heard = true;
        }
    }

    /// The earliest deadline of any subject.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.subjects.iter().filter_map(|s| s.deadline).min()
    }

    /// The verdicts to publish, sorted by subject id.
    pub(crate) fn verdicts(&self) -> Vec<Verdict> {
        let mut v: Vec<Verdict> = self
            .subjects
            .iter()
            .filter_map(|s| {
                s.verdict().map(|suspected| Verdict {
                    subject: s.id.clone(),
                    generation: s.generation,
                    suspected,
                    phi_centi: (s.verdict_phi.clamp(0.0, 1e6) * 100.0) as u32,
                })
            })
            .collect();
        v.sort_by(|a, b| a.subject.cmp(&b.subject));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Judgement {
        Judgement {
            detector: DetectorConfig::default(),
            threshold: 8.0,
            resolve_threshold: 4.0,
            for_: Duration::ZERO,
            hold: Duration::from_secs(3),
        }
    }

    fn ms(v: u64) -> Timestamp {
        Timestamp::from_micros(v * 1000)
    }

    fn hb(generation: u64, seq: u64) -> Heartbeat {
        Heartbeat {
            generation,
            seq,
            fingerprint: 0,
        }
    }

    #[test]
    fn a_silent_subject_is_suspected_once_and_cleared_by_a_heartbeat() {
        let mut m = Monitor::new(cfg());
        let (id, key) = (NodeId::from("x"), RingKey(7));
        let (added, _) = m.set_subjects(vec![(key, id.clone(), 1)], ms(0));
        assert_eq!(added, vec![id.clone()]);
        // Judged on the prior only: no verdict.
        assert!(m.verdicts().is_empty());
        for i in 1..=40 {
            assert_eq!(m.heartbeat(key, &hb(1, i), ms(i * 1000)), Arrival::Recorded);
        }
        assert!(
            m.judge(ms(40_000), true).is_empty(),
            "first heartbeat: alive, not a change from judge"
        );
        assert!(!m.verdicts()[0].suspected);
        let due = m.next_deadline().unwrap();
        assert!(due > ms(41_000) && due < ms(60_000), "{due:?}");
        assert!(
            m.judge(Timestamp::from_micros(due.as_micros() - 5_000), false)
                .is_empty()
        );
        let c = m.judge(due, false);
        assert_eq!(c.len(), 1);
        assert!(c[0].suspected && c[0].phi >= 8.0);
        assert!(
            m.judge(due + Duration::from_secs(10), true).is_empty(),
            "suspected once"
        );
        assert_eq!(m.next_deadline(), None);
        // Repeats and steps back are not intervals.
        assert_eq!(m.heartbeat(key, &hb(1, 40), due), Arrival::Reordered);
        // A heartbeat (after a gap of lost ones) clears it.
        assert_eq!(
            m.heartbeat(key, &hb(1, 60), due + Duration::from_secs(11)),
            Arrival::Recorded
        );
        let c = m.judge(due + Duration::from_secs(11), false);
        assert_eq!(c.len(), 1);
        assert!(!c[0].suspected);
        let c = m.get(key).unwrap().counts();
        assert_eq!((c.received, c.lost, c.reordered + c.duplicate), (41, 19, 1));
    }

    #[test]
    fn a_new_generation_restarts_the_judgement() {
        let mut m = Monitor::new(cfg());
        let key = RingKey(1);
        m.set_subjects(vec![(key, NodeId::from("x"), 1)], ms(0));
        m.heartbeat(key, &hb(1, 1), ms(1000));
        assert_eq!(m.heartbeat(key, &hb(2, 1), ms(2000)), Arrival::Restarted);
        assert_eq!(m.heartbeat(key, &hb(1, 5), ms(2100)), Arrival::Stale);
        assert_eq!(m.verdicts()[0].generation, 2);
        // The record of generation 2 arriving later changes nothing more.
        m.set_subjects(vec![(key, NodeId::from("x"), 2)], ms(2200));
        assert_eq!(m.get(key).unwrap().counts().received, 2);
    }

    #[test]
    fn a_hand_over_never_heard_from_is_suspected_on_the_prior() {
        let mut m = Monitor::new(cfg());
        m.set_subjects(vec![(RingKey(1), NodeId::from("x"), 1)], ms(0));
        let due = m.next_deadline().unwrap();
        assert!(
            due > ms(3000),
            "no instant suspicion from a hand-over: {due:?}"
        );
        assert!(due < ms(30_000), "a dead node is still detected: {due:?}");
        assert_eq!(m.judge(due, false).len(), 1);
    }

    #[test]
    fn an_own_stall_raises_no_suspicion() {
        let mut m = Monitor::new(cfg());
        let key = RingKey(1);
        m.set_subjects(vec![(key, NodeId::from("x"), 1)], ms(0));
        for i in 1..=20 {
            m.heartbeat(key, &hb(1, i), ms(i * 1000));
        }
        // Stalled from 20 s to 40 s: the silence counts from 40 s and
        // nothing new is raised until 43 s.
        m.observer_stalled(ms(40_000));
        assert!(m.judge(ms(40_000), true).is_empty());
        assert!(m.next_deadline().unwrap() >= ms(43_000));
    }
}
